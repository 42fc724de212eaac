"""Nothing silently wrong, nothing lost (docs/RELIABILITY.md): damaged results refused, inputs that would hang a run
turned into failure records, a failed re-run keeping the previous results, one writer per output. Each test asserts
the exit status, the one line the user sees, and that nothing on disk was lost or changed."""
from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from eval.inputs import read_audio
from eval.report import main as report_main
from eval.rescore import main as rescore_main
from eval.run import main as run_main
from eval.score import main as score_main
from pipeline.common.cli import run_cli
from pipeline.common.outputs import writer_lock
from pipeline.shard import cli as shard_cli, listing, work as shardwork
from tests.eval_fixtures import make_vggss
from tests.mediafiles import STALL_LABEL, stalling_work
from trainer.checkpoint import CheckpointError, latest_intact, load_model, save_checkpoint
from trainer.config import ModelConfig, TrainConfig
from trainer.model import AVENet

ROOT = Path(__file__).resolve().parents[1]
FAST = ["num_workers=0", "seeds=[11]", "audio_seconds=0.5", "image_size=64", "batch_size=4", "device=cpu"]


def _save(run_dir: Path, step: int, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    cfg = dataclasses.replace(TrainConfig(), model=ModelConfig(width=8))
    model = AVENet(cfg.model)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad])
    return save_checkpoint(run_dir, step, model, opt.state_dict(), {"epoch": 0}, cfg, keep=5)


def _tree(root: Path) -> dict[str, bytes]:
    """Every visible file below `root` and its bytes."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)}


def _one_line(err: str) -> str:
    """The user error of a command's stderr: its last line, the only one starting with `error:` (progress bars
    aside, nothing else: no traceback)."""
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert "Traceback" not in err and lines and lines[-1].startswith("error: "), err
    assert sum(ln.startswith("error") for ln in lines) == 1, err
    return lines[-1]


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """A finished eval.run results folder of a tiny checkpoint on a tiny VGG-SS set: (ckpt, data, results)."""
    tmp = tmp_path_factory.mktemp("evaluated")
    ckpt = _save(tmp / "run", 1)
    data = make_vggss(tmp / "vggss")
    out = tmp / "results" / "tiny"
    assert run_main(["--ckpt", str(ckpt), "--testset", "vggss", "--data", str(data), "--out", str(out), *FAST]) == 0
    return ckpt, data, out


def _copy(src: Path, dst: Path) -> Path:
    import shutil
    shutil.copytree(src, dst)
    return dst


# ------------------------------------------------------------------------ 1. a damaged result is never scored
def _chunks(store: Path, array: str) -> list[Path]:
    return sorted(p for p in (store / array).rglob("*") if p.is_file() and p.name != "zarr.json")


@pytest.mark.parametrize("damage", ["delete a noise chunk", "change a pos chunk", "add a chunk"])
def test_a_damaged_store_is_refused_and_nothing_is_rewritten(evaluated, tmp_path, capsys, damage):
    results = _copy(evaluated[2], tmp_path / "tiny")
    store = results / "maps.zarr"
    before = _tree(results)
    if damage == "delete a noise chunk":
        victim = _chunks(store, "noise")[0]
        victim.unlink()
        expected = f"{victim.relative_to(store).as_posix()}: missing"
    elif damage == "change a pos chunk":
        victim = _chunks(store, "pos")[0]
        data = bytearray(victim.read_bytes())
        data[len(data) // 2] ^= 0xFF
        victim.write_bytes(bytes(data))
        expected = f"{victim.relative_to(store).as_posix()}: content differs"
    else:
        victim = _chunks(store, "max_pos")[0].with_name("9")
        victim.write_bytes(b"\0" * 16)
        expected = f"{victim.relative_to(store).as_posix()}: not written by the run"
    damaged = _tree(results)
    capsys.readouterr()
    for command, argv in [(rescore_main, [str(results)]),
                          (report_main, [str(results), "--out", str(tmp_path / "report")]),
                          (score_main, [str(store), "--out", str(tmp_path / "scored")])]:
        assert run_cli(command, argv) == 2
        line = _one_line(capsys.readouterr().err)
        assert f"{store}: damaged map store: {expected}" in line, line
    assert _tree(results) == damaged and set(before) - set(damaged) <= {victim.relative_to(results).as_posix()}
    assert not (tmp_path / "report").exists() or not _tree(tmp_path / "report")
    assert not (tmp_path / "scored").exists() or not _tree(tmp_path / "scored")


def test_a_truncated_wav_is_refused_not_scored_short(tmp_path):
    data = make_vggss(tmp_path / "vggss")
    wav = sorted((data / "audio").glob("*.wav"))[1]
    full = wav.read_bytes()
    assert read_audio(wav)[0].shape[0] > 0
    wav.write_bytes(full[:44 + (len(full) - 44) // 2])          # the header still promises the whole clip
    with pytest.raises(Exception, match=f"{wav}: truncated audio: the header promises"):
        read_audio(wav)
    wav.write_bytes(full[:len(full) - 2])                        # one sample short
    with pytest.raises(Exception, match="truncated audio"):
        read_audio(wav)


def test_a_damaged_checkpoint_is_refused_and_resume_passes_over_it(tmp_path):
    run = tmp_path / "run"
    good = _save(run, 1, seed=1)
    latest = _save(run, 2, seed=2)
    assert latest_intact(run) == (latest, [])
    weights = latest / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0x01                                             # one bit of one weight
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=f"{latest}: damaged checkpoint: model.safetensors: content differs"):
        load_model(latest)
    found, skipped = latest_intact(run)
    assert found == good and len(skipped) == 1 and "model.safetensors: content differs" in skipped[0]
    (good / "config.yaml").write_text((good / "config.yaml").read_text().replace("width: 8", "width: 16"))
    found, skipped = latest_intact(run)
    assert found is None and "config.yaml: content differs" in skipped[1]


def test_a_non_finite_weight_is_found_at_load(tmp_path):
    from safetensors.torch import load_file, save_file

    step = _save(tmp_path / "run", 1)
    weights = load_file(str(step / "model.safetensors"))
    name = next(k for k, v in weights.items() if v.is_floating_point())
    weights[name].view(-1)[0] = float("nan")
    save_file(weights, str(step / "model.safetensors"))
    import json
    state = json.loads((step / "state.json").read_text())
    del state["integrity"]                                       # as a checkpoint of an older version would be
    (step / "state.json").write_text(json.dumps(state))
    with pytest.raises(CheckpointError, match=f"model.safetensors: non-finite values in \\['{name}'\\]"):
        load_model(step)


def test_a_damaged_npz_is_refused(tmp_path, capsys):
    n = 3
    rng = np.random.default_rng(0)
    maps = tmp_path / "maps.npz"
    np.savez(maps, pos=rng.random((n, 7, 7), dtype=np.float32), boxes=np.tile([[[0.1, 0.1, 0.6, 0.6]]], (n, 1, 1)),
             silence=rng.random((n, 7, 7), dtype=np.float32))
    assert run_cli(score_main, [str(maps), "--out", str(tmp_path / "ok"), "sweep_steps=11"]) == 0
    data = bytearray(maps.read_bytes())
    data[200] ^= 0xFF                                            # inside the first member's data
    maps.write_bytes(bytes(data))
    before = _tree(tmp_path / "ok")
    capsys.readouterr()
    assert run_cli(score_main, [str(maps), "--out", str(tmp_path / "ok"), "sweep_steps=11"]) == 2
    assert _one_line(capsys.readouterr().err).startswith(f"error: {maps}: cannot read maps")
    assert _tree(tmp_path / "ok") == before


# ------------------------------------------------------------------------ 2. no input can hang a run
def test_a_fifo_among_the_videos_is_a_failure_record_not_a_hang(synth_corpus, tmp_path):
    src = tmp_path / "src"
    (src / "video").mkdir(parents=True)
    videos = sorted((synth_corpus / "video").glob("*.mp4"))[:4]
    for v in videos[1:]:
        os.symlink(v, src / "video" / v.name)
    os.mkfifo(src / "video" / videos[0].name)
    (src / "vggsound.csv").write_text("".join(f"{v.stem[:11]},{int(v.stem[12:])},x,train\n" for v in videos))
    out = tmp_path / "out"
    argv = [sys.executable, "-m", "pipeline.shard", "--src", str(src), "--out", str(out), "--no-progress",
            "--val-fraction", "0", "--workers", "2", "--min-duration", "1.5"]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    failures = (out / "failures.jsonl").read_text().splitlines()
    assert len(failures) == 1 and '"reason": "unreadable"' in failures[0] and "not a regular file" in failures[0]
    assert "written 3 + failed 1" in r.stdout
    again = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=ROOT)   # resume: no hang either
    assert again.returncode == 0 and "already finished" in again.stdout


def test_a_stalled_clip_times_out_and_the_run_goes_on(synth_corpus):
    ids = [p.stem for p in sorted((synth_corpus / "video").glob("*.mp4"))[:4]]
    clips = [[cid, cid[:11], 0, STALL_LABEL if k == 1 else "ok", 0, "train"] for k, cid in enumerate(ids)]
    opts = shardwork.ClipOptions(frames=1, min_duration=1.5, frame_size=32, audio_format="wav", jpeg_quality=90)
    layout = listing.Layout("video", synth_corpus / "video", synth_corpus / "frames", synth_corpus / "audio")
    t0 = time.monotonic()
    with shardwork.ClipPool(opts, layout, 2, work=stalling_work, timeout=3.0) as pool:
        results = list(pool.map(clips))
    assert time.monotonic() - t0 < 60
    assert [r[0] for r in results] == ids
    assert results[1][2]["reason"] == "timeout" and "no result after 3 s" in results[1][2]["detail"]
    assert all(r[1] is not None for k, r in enumerate(results) if k != 1)


def test_clip_timeout_must_be_a_finite_number(synth_corpus, tmp_path, capsys):
    for value in ("-1", "inf", "nan"):
        assert run_cli(shard_cli.main, ["--src", str(synth_corpus), "--out", str(tmp_path / "o"),
                                        "--clip-timeout", value]) == 2
        assert "clip_timeout must be a number of seconds" in _one_line(capsys.readouterr().err)
    assert not (tmp_path / "o").exists()


# ------------------------------------------------------------------------ 3. a failed re-run keeps the old results
def test_a_failed_eval_run_keeps_the_previous_results(evaluated, tmp_path, capsys):
    ckpt, data, finished = evaluated
    results = _copy(finished, tmp_path / "tiny")
    bad_data = _copy(data, tmp_path / "vggss")
    before = _tree(results)
    wav = sorted((bad_data / "audio").glob("*.wav"))[2]
    wav.write_bytes(wav.read_bytes()[:60])                       # damaged mid-way through the evaluation
    capsys.readouterr()
    argv = ["--ckpt", str(ckpt), "--testset", "vggss", "--data", str(bad_data), "--out", str(results), *FAST]
    assert run_cli(run_main, argv) == 2
    assert f"{wav}: truncated audio" in _one_line(capsys.readouterr().err)
    assert _tree(results) == before
    assert not [p.name for p in results.iterdir() if p.name.startswith(".")]     # no staging folder, no lock left


def test_failed_reruns_of_report_and_score_keep_their_outputs(evaluated, tmp_path, capsys):
    results = evaluated[2]
    report = tmp_path / "report"
    assert run_cli(report_main, [str(results), "--out", str(report)]) == 0
    before = _tree(report)
    assert set(before) >= {"tables.md", "tables.csv", "maxima.png"}
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "metrics.json").write_text("{not json")
    capsys.readouterr()
    assert run_cli(report_main, [str(results), str(tmp_path / "broken"), "--out", str(report)]) == 2
    assert "metrics.json: not valid JSON" in _one_line(capsys.readouterr().err)
    assert _tree(report) == before
    # an output folder holding the user's own files is never replaced
    (report / "notes.txt").write_text("mine")
    assert run_cli(report_main, [str(results), "--out", str(report)]) == 2
    assert "holds files this command did not write (notes.txt)" in _one_line(capsys.readouterr().err)
    assert (report / "notes.txt").read_text() == "mine" and _tree(report) == {**before, "notes.txt": b"mine"}


def test_rescore_in_place_keeps_the_store_and_replaces_the_rest(evaluated, tmp_path):
    results = _copy(evaluated[2], tmp_path / "tiny")
    (results / "notes.txt").write_text("mine")                  # not rescore's: left alone
    before = _tree(results)
    assert run_cli(rescore_main, [str(results)]) == 0
    assert _tree(results) == before                              # same options: byte-identical files
    assert run_cli(rescore_main, [str(results), "metrics.tau=0.25"]) == 0
    after = _tree(results)
    assert {k for k in after if k.startswith("maps.zarr/")} == {k for k in before if k.startswith("maps.zarr/")}
    assert all(after[k] == before[k] for k in after if k.startswith("maps.zarr/"))
    assert after["metrics.json"] != before["metrics.json"] and after["notes.txt"] == b"mine"


# ------------------------------------------------------------------------ 4. one writer per output
HOLD = """
import sys, time
from pipeline.common.outputs import writer_lock
with writer_lock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(600)
"""


def _holder(out: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_writer_is_refused_with_the_holder_named(synth_corpus, evaluated, tmp_path, capsys):
    out = tmp_path / "shards"
    holder = _holder(out)
    try:
        assert run_cli(shard_cli.main, ["--src", str(synth_corpus), "--out", str(out), "--no-progress"]) == 2
        line = _one_line(capsys.readouterr().err)
        assert f"error: {out}: another process is writing it (pid {holder.pid} on " in line
        assert sorted(p.name for p in out.iterdir()) == [".lock"]           # the refused run wrote nothing
        ckpt, data, _ = evaluated
        res = tmp_path / "res"
        holder2 = _holder(res)
        try:
            argv = ["--ckpt", str(ckpt), "--testset", "vggss", "--data", str(data), "--out", str(res), *FAST]
            assert run_cli(run_main, argv) == 2
            assert f"pid {holder2.pid}" in _one_line(capsys.readouterr().err)
        finally:
            holder2.kill()
            holder2.wait()
    finally:
        holder.kill()                                            # kill -9: the kernel drops its lock
        holder.wait()
    with writer_lock(out):                                       # so the lock it left is not stale
        pass


def test_a_second_training_into_the_same_run_is_refused(shard_dir, tmp_path):
    run_dir = tmp_path / "runs" / "twice"
    holder = _holder(run_dir)
    try:
        env = dict(os.environ, OMP_NUM_THREADS="1")
        r = subprocess.run([sys.executable, str(ROOT / "trainer" / "train.py"), "--config",
                            str(ROOT / "trainer/configs/cpu_demo.yaml"), f"output_root={tmp_path / 'runs'}",
                            "name=twice", f"data.shard_dir={shard_dir}", "max_steps=1"],
                           capture_output=True, text=True, timeout=300, cwd=ROOT, env=env)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert r.returncode == 2, r.stderr[-2000:]
    assert f"run {run_dir}: another process is writing it (pid {holder.pid}" in r.stderr.strip().splitlines()[-1]
    assert sorted(p.name for p in run_dir.iterdir()) == [".lock"]


# ------------------------------------------------------------------------ 5. a resumed run is what its records say
TINY = ["data.source=random", "data.random_image_size=32", "data.random_frames=32", "model.width=4",
        "optim.batch_size=4", "log_every=1", "val_every=0", "ckpt_every=0", "data.random_batches=3"]


def _train(out: Path, *overrides: str, resume: str = "auto", flags: tuple[str, ...] = ()
           ) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, str(ROOT / "trainer" / "train.py"), "--resume", resume, *flags, f"output_root={out}",
           "name=r", *TINY, *overrides]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """runs/ with a run `r` of 2 optimizer steps, checkpointed at its end."""
    out = tmp_path_factory.mktemp("runs")
    r = _train(out, "max_steps=2", resume="none")
    assert r.returncode == 0, r.stderr[-3000:]
    return out


@pytest.mark.parametrize("change, listed", [
    (["optim.lr=0.5"], "optim.lr 0.0001 -> 0.5"),
    (["san.silence_negative=false", "contrastive.tau=0.05"],
     "contrastive.tau 0.03 -> 0.05; san.silence_negative True -> False"),
])
def test_resume_refuses_another_recipe(trained, tmp_path, change, listed):
    out = _copy(trained, tmp_path / "runs")
    before = _tree(out)
    r = _train(out, "max_steps=3", *change)
    assert r.returncode == 2, r.stderr[-2000:]
    line = _one_line(r.stderr)
    assert f"step_00000002: this recipe differs from the checkpoint's ({listed}); resume with" in line, line
    assert _tree(out) == before                                  # no log line, no checkpoint, config.yaml kept
    # run-control keys may change: max_steps, log and checkpoint intervals
    assert _train(out, "max_steps=3", "log_every=2", "ckpt_every=5").returncode == 0


def test_override_recipe_applies_and_records_the_new_values(trained, tmp_path):
    import json

    import yaml
    out = _copy(trained, tmp_path / "runs")
    r = _train(out, "max_steps=3", "optim.lr=0.5", "optim.plateau_factor=0.5", flags=("--override-recipe",))
    assert r.returncode == 0, r.stderr[-2000:]
    assert "--override-recipe: applying optim.lr 0.0001 -> 0.5; optim.plateau_factor 0.1 -> 0.5" in r.stdout + r.stderr
    log = [json.loads(x) for x in (out / "r" / "log.jsonl").read_text().splitlines()]
    assert [rec["lr"] for rec in log if rec.get("step") == 3 and "lr" in rec] == [0.5]
    assert yaml.safe_load((out / "r" / "config.yaml").read_text())["optim"]["lr"] == 0.5
    state = json.loads((out / "r" / "checkpoints" / "step_00000003" / "state.json").read_text())
    assert state["optimizer_param_groups"][0]["lr"] == 0.5 and state["scheduler"]["factor"] == 0.5
    saved = yaml.safe_load((out / "r" / "checkpoints" / "step_00000003" / "config.yaml").read_text())
    assert saved["optim"]["lr"] == 0.5 and saved["optim"]["plateau_factor"] == 0.5


def test_resume_auto_passes_over_a_damaged_latest_checkpoint(trained, tmp_path):
    out = _copy(trained, tmp_path / "runs")
    assert _train(out, "max_steps=3").returncode == 0
    latest = out / "r" / "checkpoints" / "step_00000003"
    (latest / "model.safetensors").write_bytes((latest / "model.safetensors").read_bytes()[:1000])   # truncated
    r = _train(out, "max_steps=4")
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"warning: {latest}: damaged checkpoint: model.safetensors: content differs" in r.stdout + r.stderr
    assert "resumed from" in r.stdout + r.stderr and "step_00000002 (step 2" in r.stdout + r.stderr


# ------------------------------------------------------------------------ 6. one line, never a traceback
@pytest.mark.parametrize("override, message", [
    ("optim.lr=nan", "optim.lr: expected a finite number > 0, got nan"),
    ("optim.batch_size=0", "optim.batch_size: expected a finite number >= 1, got 0"),
    ("model.width=0", "model.width: expected a finite number >= 1, got 0"),
    ("max_steps=inf", "max_steps: expected an integer, got 'inf'"),
])
def test_out_of_range_training_options(tmp_path, override, message):
    r = _train(tmp_path, override, resume="none")
    assert r.returncode == 2 and _one_line(r.stderr) == f"error: {message}"
    assert not (tmp_path / "r").exists()


def test_out_of_range_eval_options_and_a_pickle_named_safetensors(evaluated, tmp_path, capsys):
    ckpt, data, _ = evaluated
    base = ["--ckpt", str(ckpt), "--testset", "vggss", "--data", str(data), "--out", str(tmp_path / "o")]
    assert run_cli(run_main, base + ["image_size=0"]) == 2
    assert _one_line(capsys.readouterr().err) == "error: image_size: expected a finite number >= 16, got 0"
    fake = _copy(ckpt, tmp_path / "step_00000001")
    torch.save({"w": torch.zeros(2)}, fake / "model.safetensors")            # a pickle under a safetensors name
    import json
    state = json.loads((fake / "state.json").read_text())
    del state["integrity"]                                                  # as an older checkpoint would be
    (fake / "state.json").write_text(json.dumps(state))
    assert run_cli(run_main, ["--ckpt", str(fake), *base[2:]]) == 2
    line = _one_line(capsys.readouterr().err)
    assert line.startswith(f"error: {fake / 'model.safetensors'}: cannot load weights"), line
    assert not (tmp_path / "o").exists()


def test_an_empty_npz_and_an_unwritable_output(tmp_path, capsys):
    empty = tmp_path / "maps.npz"
    empty.write_bytes(b"")
    assert run_cli(score_main, [str(empty), "--out", str(tmp_path / "s")]) == 2
    assert _one_line(capsys.readouterr().err).startswith(f"error: {empty}: cannot read maps")
    good = tmp_path / "good.npz"
    np.savez(good, pos=np.ones((2, 4, 4), np.float32), boxes=np.tile([[[0.1, 0.1, 0.6, 0.6]]], (2, 1, 1)),
             silence=np.zeros((2, 4, 4), np.float32))
    for command, argv in [(score_main, [str(good), "--out", "/sys/ssl-san-results", "sweep_steps=11"]),
                          (shard_cli.main, ["--src", str(tmp_path), "--out", "/sys/ssl-san-shards"])]:
        assert run_cli(command, argv) == 2                       # /sys refuses even root: EPERM
        assert _one_line(capsys.readouterr().err) == f"error: {argv[argv.index('--out') + 1]}: Operation not permitted"


def test_a_full_or_read_only_disk_is_one_line(capsys):
    import errno

    def full(argv):
        raise OSError(errno.ENOSPC, "No space left on device", "/data/results/maps.zarr/pos/c/0/0/0")

    def read_only(argv):
        raise OSError(errno.EROFS, "Read-only file system", "/data/shards/train-000001.tar")

    assert run_cli(full, []) == 1
    assert _one_line(capsys.readouterr().err) == \
        "error: /data/results/maps.zarr/pos/c/0/0/0: No space left on device"
    assert run_cli(read_only, []) == 1
    assert _one_line(capsys.readouterr().err) == "error: /data/shards/train-000001.tar: Read-only file system"



@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_and_sigterm_checkpoint_at_the_next_step_not_the_next_log(tmp_path, sig):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, str(ROOT / "trainer" / "train.py"), "--resume", "none", f"output_root={tmp_path}",
           "name=c", *TINY, "log_every=1000", "max_steps=5000"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while "global batch" not in proc.stdout.readline():              # the loop is about to start
        assert proc.poll() is None, proc.stderr.read()[-3000:]
    time.sleep(3.0)                                                  # some steps, far from a log step
    proc.send_signal(sig)
    t0 = time.time()
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-3000:]
    assert time.time() - t0 < 30 and "Traceback" not in err and "KeyboardInterrupt" not in err
    import json
    record = json.loads((tmp_path / "c" / "log.jsonl").read_text().splitlines()[-1])
    stopped = record["step"]
    assert 1 <= stopped < 1000 and "train/loss" in record          # the partial interval is logged
    assert f"stop signal: checkpoint at step {stopped}" in out
    assert (tmp_path / "c" / "checkpoints" / f"step_{stopped:08d}").is_dir()


# ------------------------------------------------------------------------ 7. smaller ones
def test_a_run_whose_every_clip_failed_is_an_error(synth_corpus, tmp_path, capsys):
    src = tmp_path / "src"
    (src / "video").mkdir(parents=True)
    videos = sorted((synth_corpus / "video").glob("*.mp4"))[:3]
    for v in videos:
        (src / "video" / v.name).write_bytes(b"not an mp4")
    (src / "vggsound.csv").write_text("".join(f"{v.stem[:11]},{int(v.stem[12:])},x,train\n" for v in videos))
    out = tmp_path / "out"
    assert run_cli(shard_cli.main, ["--src", str(src), "--out", str(out), "--no-progress", "--val-fraction", "0"]) == 2
    captured = capsys.readouterr()
    assert "0 shards written" in captured.out and "written 0 + failed 3" in captured.out
    assert _one_line(captured.err) == (f"error: {out}: no clip could be sharded; the reason for each is in "
                                       f"{out / 'failures.jsonl'}")
    assert len((out / "failures.jsonl").read_text().splitlines()) == 3 and not list(out.glob("*.tar"))


POOL = """
import sys, threading, time
from pathlib import Path
from pipeline.shard import listing, work
from tests.mediafiles import STALL_LABEL, stalling_work

if __name__ == "__main__":
    corpus = Path(sys.argv[1])
    ids = [p.stem for p in sorted((corpus / "video").glob("*.mp4"))[:2]]
    opts = work.ClipOptions(frames=1, min_duration=1.5, frame_size=32, audio_format="wav", jpeg_quality=90)
    layout = listing.Layout("video", corpus / "video", corpus / "frames", corpus / "audio")
    with work.ClipPool(opts, layout, 2, work=stalling_work) as pool:
        def show():
            while len(pool.pool._processes) < 2:
                time.sleep(0.05)
            time.sleep(0.5)
            print(" ".join(str(p) for p in pool.pool._processes), flush=True)
        threading.Thread(target=show, daemon=True).start()
        list(pool.map([[c, c[:11], 0, STALL_LABEL, 0, "train"] for c in ids]))
"""


def test_sharder_workers_end_with_a_killed_sharder(synth_corpus, tmp_path):
    script = tmp_path / "pool.py"
    script.write_text(POOL)
    proc = subprocess.Popen([sys.executable, str(script), str(synth_corpus)], stdout=subprocess.PIPE, text=True,
                            cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    workers = [int(p) for p in proc.stdout.readline().split()]
    assert len(workers) == 2 and all(_alive(p) for p in workers)    # stalled in their clips
    proc.kill()                                                     # kill -9 of the sharder
    proc.wait()
    deadline = time.time() + 10
    while time.time() < deadline and any(_alive(p) for p in workers):
        time.sleep(0.1)
    assert not any(_alive(p) for p in workers)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _small_shards(synth_corpus: Path, tmp_path: Path, src: Path | None = None) -> tuple[list[str], Path]:
    out = tmp_path / "shards"
    argv = ["--src", str(src or synth_corpus), "--out", str(out), "--no-progress", "--shard-size", "4",
            "--val-fraction", "0", "--min-duration", "1.5", "--workers", "2"]
    assert run_cli(shard_cli.main, argv) == 0
    return argv, out


def test_a_finished_tar_damaged_on_disk_is_written_again(synth_corpus, tmp_path, capsys):
    argv, out = _small_shards(synth_corpus, tmp_path)
    good = _tree(out)
    tar = sorted(out.glob("train-*.tar"))[1]
    tar.write_bytes(tar.read_bytes()[:4096])                      # truncated after it was finished
    capsys.readouterr()
    assert run_cli(shard_cli.main, ["merge", "--out", str(out)]) == 2
    assert f"error: {tar}: 4096 bytes, " in _one_line(capsys.readouterr().err)
    assert run_cli(shard_cli.main, argv) == 0
    err = capsys.readouterr().err
    assert f"warning: {tar}: 4096 bytes, " in err and "writing it again" in err
    assert _tree(out) == good                                      # the same bytes as before the damage
    record = out / ".state" / f"{tar.stem}.json"
    record.write_text('{"count": "many"}')                          # valid JSON, not a record
    assert run_cli(shard_cli.main, ["merge", "--out", str(out)]) == 2
    assert f"error: {record}: damaged shard record" in _one_line(capsys.readouterr().err)
    assert run_cli(shard_cli.main, argv) == 0
    assert f"warning: {record}: damaged shard record" in capsys.readouterr().err
    assert _tree(out) == good


def test_the_same_source_spelt_otherwise_resumes(synth_corpus, tmp_path, monkeypatch, capsys):
    link = tmp_path / "corpus-link"
    link.symlink_to(synth_corpus)
    argv, out = _small_shards(synth_corpus, tmp_path, src=link)
    good = _tree(out)
    monkeypatch.chdir(tmp_path)
    for spelling in ("corpus-link", str(synth_corpus), str(tmp_path) + "/./corpus-link/"):
        other = list(argv)
        other[other.index("--src") + 1] = spelling
        assert run_cli(shard_cli.main, other) == 0, capsys.readouterr().err
        assert "already finished" in capsys.readouterr().out
    assert _tree(out) == good
    other = list(argv) + ["--seed", "9"]                           # a real change is still refused
    assert run_cli(shard_cli.main, other) == 2
    assert "other settings ['seed']" in _one_line(capsys.readouterr().err)


def test_score_refuses_inverted_boxes_and_names_empty_ground_truth(tmp_path, capsys):
    n = 3
    pos = np.random.default_rng(1).random((n, 7, 7), dtype=np.float32)
    boxes = np.array([[[0.1, 0.1, 0.6, 0.6]], [[0.6, 0.1, 0.1, 0.6]], [[0.2, 0.2, 0.5, 0.5]]])   # sample 1: x2 < x1
    np.savez(tmp_path / "inverted.npz", pos=pos, boxes=boxes, silence=pos * 0)
    assert run_cli(score_main, [str(tmp_path / "inverted.npz"), "--out", str(tmp_path / "a")]) == 2
    assert _one_line(capsys.readouterr().err) == (
        f"error: {tmp_path / 'inverted.npz'}: boxes: box 0 of sample 1 [0.6, 0.1, 0.1, 0.6] has x2 < x1 or y2 < y1 "
        f"(1 such boxes); boxes are [x1, y1, x2, y2]")
    assert not (tmp_path / "a").exists()
    boxes[1, 0] = [0.3, 0.5, 0.3, 0.9]                              # zero width: empty, as in the real VGG-SS file
    np.savez(tmp_path / "empty.npz", pos=pos, boxes=boxes, silence=pos * 0)
    assert run_cli(score_main, [str(tmp_path / "empty.npz"), "--out", str(tmp_path / "b"), "sweep_steps=11"]) == 0
    err = capsys.readouterr().err
    assert "warning: " in err and "1 samples have an empty ground truth (first: sample 1)" in err
    import json
    assert json.loads((tmp_path / "b" / "metrics.json").read_text())["input"]["empty_gt"] == [1]


# ------------------------------------------------------------------------ damaged or hostile shard members
WDS2IDX = str(Path(sys.executable).with_name("wds2idx"))
EPOCH = """
import json, sys
from pipeline.common.cli import UserError
from pipeline.load.build import build_loader
from pipeline.load.contract import LoaderConfig
if __name__ == "__main__":
    cfg = LoaderConfig(backend=sys.argv[2], batch_size=2, image_size=32, clip_seconds=1.0, window_seconds=1.0,
                       workers=1)
    try:
        ld = build_loader(cfg, sys.argv[1], split="train", train=False)
        print(json.dumps({"keys": [k for b in ld for k in b.key], "skipped": ld.stats.skipped}))
    except UserError as exc:
        print(json.dumps({"error": str(exc)}))
"""


def _epoch(shards: Path, backend: str, tmp_path: Path) -> tuple[dict, str]:
    import json
    script = tmp_path / "epoch.py"
    script.write_text(EPOCH)
    r = subprocess.run([sys.executable, str(script), str(shards), backend], capture_output=True, text=True,
                       cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=300)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1]), r.stderr


def _one_tar(shard_dir: Path, tmp_path: Path) -> tuple[Path, list[str]]:
    import shutil
    import tarfile
    out = tmp_path / "shards"
    out.mkdir()
    tar = sorted(shard_dir.glob("train-*.tar"))[0]
    shutil.copy(tar, out / tar.name)
    shutil.copy(tar.with_suffix(".idx"), out / tar.with_suffix(".idx").name)
    with tarfile.open(out / tar.name) as tf:
        keys = sorted({m.name.split(".", 1)[0] for m in tf.getmembers()})
    return out / tar.name, keys


@pytest.mark.parametrize("backend", ["dali", "reference"])
def test_a_damaged_jpeg_inside_a_shard_is_named(shard_dir, tmp_path, backend):
    import tarfile
    tar, keys = _one_tar(shard_dir, tmp_path)
    with tarfile.open(tar) as tf:
        member = next(m for m in tf.getmembers() if m.name.endswith(".jpg"))
    data = bytearray(tar.read_bytes())
    data[member.offset_data + 100:member.offset_data + member.size - 4] = bytes(member.size - 104)   # same length
    tar.write_bytes(bytes(data))
    got, _ = _epoch(tar.parent, backend, tmp_path)
    key = member.name.split(".", 1)[0]
    assert got["error"].startswith(f"{tar}:{key}: cannot decode the JPEG"), got


@pytest.mark.parametrize("backend", ["dali", "reference"])
def test_a_member_named_as_a_path_is_skipped_counted_and_named(shard_dir, tmp_path, backend):
    import io
    import tarfile
    tar, keys = _one_tar(shard_dir, tmp_path)
    with tarfile.open(tar) as tf:
        first = [(m, tf.extractfile(m).read()) for m in tf.getmembers() if m.name.startswith(keys[0] + ".")]
    with tarfile.open(tar, "a") as tf:                           # a copy of the first sample, named ../../etc/x.*
        for m, data in first:
            info = tarfile.TarInfo("../../etc/x" + m.name[len(keys[0]):])
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    subprocess.run([WDS2IDX, str(tar), str(tar.with_suffix(".idx"))], check=True, capture_output=True)
    got, err = _epoch(tar.parent, backend, tmp_path)
    assert sorted(got["keys"]) == keys and got["skipped"] == 1, got     # every real sample once, the path never
    assert f"warning: {tar}: 1 samples whose member names are paths are skipped (first: '../../etc/x')" in err
