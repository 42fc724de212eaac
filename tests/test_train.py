"""Training loop end to end on seeded random tensors (no data pipeline): 2-process gloo DDP, exact resume after
SIGTERM, non-finite loss handling, checkpoint round trip and `load_model`."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from trainer.checkpoint import CheckpointError, load_model, resolve

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
TINY = ["data.source=random", "data.random_image_size=32", "data.random_frames=32", "model.width=4",
        "optim.batch_size=4", "log_every=1", "val_every=0", "ckpt_every=0", "data.random_batches=3"]


def _env():
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    env.pop("CUDA_VISIBLE_DEVICES", None)
    return env


def _train(out, *overrides, resume="none", launch=None, timeout=240):
    cmd = (launch or [PY]) + [str(ROOT / "trainer" / "train.py"), "--resume", resume,
                              f"output_root={out}", *TINY, *overrides]
    return subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=timeout)


def _losses(run_dir):
    out = {}
    for line in (run_dir / "log.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if "train/loss" in rec:
            out[rec["step"]] = rec
    return out


def test_two_process_ddp_identical_weights(tmp_path):
    launch = [PY, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
              "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "29617"]
    r = _train(tmp_path, "name=ddp", "max_steps=3", "optim.batch_size=8", "optim.grad_accum=2", launch=launch)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "global batch 8 = 2 processes x 2 x grad_accum 2" in r.stdout + r.stderr
    state = json.loads((tmp_path / "ddp/checkpoints/step_00000003/state.json").read_text())
    assert state["world_size"] == 2 and len(state["ranks"]) == 2
    digests = [rank["params_sha256"] for rank in state["ranks"]]
    assert digests[0] == digests[1]
    # both processes drew different batches and noise, and both positions are recorded
    assert state["ranks"][0]["rng"]["generators"] != state["ranks"][1]["rng"]["generators"]
    # 3 batches per epoch and 2 per optimizer step: one step per epoch, the third batch dropped
    assert state["epoch"] == 2 and [rank["loader"]["index"] for rank in state["ranks"]] == [2, 2]
    model, cfg = load_model(tmp_path / "ddp")
    assert cfg.model.width == 4 and not model.training


def test_resume_after_sigterm_repeats_losses_exactly(tmp_path):
    common = ["max_steps=9", "deterministic=true", "ckpt_every=4"]
    ref = _train(tmp_path, "name=ref", *common)
    assert ref.returncode == 0, ref.stderr[-3000:]
    cmd = [PY, str(ROOT / "trainer" / "train.py"), "--resume", "auto", f"output_root={tmp_path}", *TINY,
           "name=cut", *common]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = tmp_path / "cut" / "log.jsonl"
    deadline = time.time() + 180
    while time.time() < deadline and (not log.exists() or len(log.read_text().splitlines()) < 2):
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-3000:]
    cut_at = json.loads(log.read_text().splitlines()[-1])["step"]
    assert cut_at < 9, "the run finished before the signal arrived"
    assert (tmp_path / "cut/checkpoints" / f"step_{cut_at:08d}").is_dir()
    resumed = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=240)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from" in resumed.stdout + resumed.stderr
    a, b = _losses(tmp_path / "ref"), _losses(tmp_path / "cut")
    assert sorted(a) == sorted(b) == list(range(1, 10))
    for step in a:
        for key in ("train/loss", "train/loss_cl", "train/loss_eq", "train/loss_sn", "train/max_noise"):
            assert a[step][key] == b[step][key], (step, key)
    wa = load_file(str(tmp_path / "ref/checkpoints/step_00000009/model.safetensors"))
    wb = load_file(str(tmp_path / "cut/checkpoints/step_00000009/model.safetensors"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_non_finite_loss_stops_without_checkpoint(tmp_path):
    r = _train(tmp_path, "name=nan", "max_steps=3", "contrastive.temperature=1e-45")   # 0 is refused as an option
    assert r.returncode == 1
    assert "error: non-finite loss at step 1" in r.stderr
    assert not list((tmp_path / "nan").glob("checkpoints/step_*"))


def test_user_errors_are_one_line(tmp_path):
    r = _train(tmp_path, "name=bad", "optim.batch_size=6", "optim.grad_accum=4")
    assert r.returncode == 2 and r.stderr.strip().startswith("error: optim.batch_size=6 is not divisible")
    r = _train(tmp_path, "name=bad", "san.reduction=median")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "median" in r.stderr
    with pytest.raises(CheckpointError):
        resolve(tmp_path / "nothing")


def test_bench_reports_both_loops(tmp_path):
    out = tmp_path / "bench.json"
    r = subprocess.run([PY, "-m", "trainer.bench", "--batch", "2", "--image-size", "32", "--frames", "32", "--steps",
                        "1", "--warmup", "1", "--precision", "bf16", "--channels-last", "--json", str(out),
                        "model.width=8"], cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = json.loads(out.read_text())
    assert [row["run"] for row in rows] == ["this", "ssl-tie baseline"]
    assert rows[0]["precision"] == "bf16" and rows[0]["channels_last"] and rows[0]["encode_audio_once"]
    assert rows[1]["precision"] == "fp32" and not rows[1]["encode_audio_once"]
    assert all(row["samples_per_s"] > 0 for row in rows) and "speed-up over the baseline" in r.stdout


def test_bf16_channels_last_clip_single_view(tmp_path):
    r = _train(tmp_path, "name=bf16", "max_steps=2", "precision=bf16", "channels_last=true", "model.width=8",
               "optim.grad_clip=1.0", "gather_features=false", "equivariance.enabled=false",
               "san.silence_negative=false", "san.noise_negative=false", "san.silence_map_loss=false",
               "san.noise_map_loss=false")
    assert r.returncode == 0, r.stderr[-3000:]
    state = json.loads((tmp_path / "bf16/checkpoints/step_00000002/state.json").read_text())
    assert state["step"] == 2 and state["scaler"] is None  # a grad scaler exists only for fp16 on a GPU
    rec = _losses(tmp_path / "bf16")[2]
    assert "train/loss_eq" not in rec and "train/loss_cl_t" not in rec and rec["lr"] == 1e-4
    assert "train/loss_s" not in rec and "train/max_noise" not in rec  # SSL-TIE: no silence/noise in training
    val = [json.loads(x) for x in (tmp_path / "bf16/log.jsonl").read_text().splitlines() if '"val/loss"' in x][-1]
    assert "val/max_silence" in val and "val/max_noise" in val and "val/loss_s" not in val  # but measured in val


@pytest.mark.slow
def test_compiled_encoders_train(tmp_path):
    # width 8: at width 4 this run died without an error message (width 4 also crashes channels_last on the CPU);
    # ~7 min on 2 loaded cores
    r = _train(tmp_path, "name=compiled", "max_steps=2", "compile=true", "model.width=8", timeout=1500)
    assert r.returncode == 0, r.stderr[-3000:]
    losses = _losses(tmp_path / "compiled")
    assert len(losses) == 2
    assert losses[1]["compiles"] > 0 and losses[2]["compiles"] == 0      # compiled at the first step only


def test_a_list_of_seeds_trains_one_run_per_seed(tmp_path):
    r = _train(tmp_path, "name=multi", "max_steps=2", "seeds=[3,5]")
    assert r.returncode == 0, r.stderr[-3000:]
    weights = {}
    for k in (3, 5):
        run = tmp_path / "multi" / f"seed-{k}"
        model, cfg = load_model(run)
        assert cfg.seed == k and cfg.seeds == [] and cfg.name == f"multi/seed-{k}"
        assert sorted(_losses(run)) == [1, 2]
        weights[k] = load_file(str(run / "checkpoints/step_00000002/model.safetensors"))
    assert not all(torch.equal(weights[3][n], weights[5][n]) for n in weights[3])   # other seeds, other weights
    again = _train(tmp_path, "name=multi", "max_steps=2", "seeds=[3,5]", resume="auto")
    assert again.returncode == 0 and (again.stdout + again.stderr).count("nothing to do") == 2
    (tmp_path / "stopped").mkdir()
    (tmp_path / "stopped" / "STOP").touch()                   # slurm/train.sbatch's stop file, for the whole list
    r = _train(tmp_path, "name=stopped", "max_steps=3", "seeds=[1,2]")
    assert r.returncode == 0, r.stderr[-3000:]
    assert (tmp_path / "stopped/seed-1/checkpoints/step_00000001").is_dir()
    assert not (tmp_path / "stopped/seed-2").exists()
    bad = _train(tmp_path, "name=twice", "seeds=[1,1]")
    assert bad.returncode == 2 and bad.stderr.strip() == "error: seeds: each seed once, got [1, 1]"
