"""The trainer on real shards (the session's synthetic corpus through pipeline.shard and the DALI / reference
loaders): a short run with validation metrics incl. pointing accuracy, and an exact mid-epoch resume."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from trainer.checkpoint import load_model

ROOT = Path(__file__).resolve().parents[1]


def _small(shard_dir, synth_corpus, out):
    return [f"output_root={out}", f"data.shard_dir={shard_dir}", f"data.synth_json={synth_corpus / 'synth.json'}",
            "model.width=8", "optim.batch_size=2", "data.loader.image_size=64", "data.loader.clip_seconds=1.0",
            "data.loader.window_seconds=1.0", "data.loader.workers=1", "log_every=1", "val_every=0",
            "ckpt_every=0", "val_batches=2"]


def _run(args, timeout=300):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    cmd = [sys.executable, str(ROOT / "trainer" / "train.py"), "--config", str(ROOT / "trainer/configs/cpu_demo.yaml"),
           *args]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def _records(run_dir):
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("backend", ["dali", "reference"])
def test_short_run_on_shards_with_pointing(shard_dir, synth_corpus, tmp_path, backend):
    r = _run(["--resume", "none", "name=smoke", "max_steps=2", f"data.loader.backend={backend}", "val_at_start=true",
              *_small(shard_dir, synth_corpus, tmp_path)])
    assert r.returncode == 0, r.stderr[-3000:]
    recs = _records(tmp_path / "smoke")
    train = [x for x in recs if "train/loss" in x]
    val = [x for x in recs if "val/loss" in x]
    assert [x["step"] for x in train] == [1, 2] and all(x["data_wait_s"] >= 0 for x in train)
    for key in ("train/loss_cl", "train/loss_cl_t", "train/loss_eq", "train/loss_s", "train/loss_n", "lr",
                "samples_per_s"):
        assert key in train[-1]
    assert [x["step"] for x in val] == [0, 2]  # the untrained model, then the end of the run
    assert 0.0 <= val[-1]["val/pointing"] <= 1.0 and val[-1]["val/pointing_samples"] > 0
    assert (tmp_path / "smoke/config.yaml").is_file() and list((tmp_path / "smoke/tb").iterdir())
    model, cfg = load_model(tmp_path / "smoke")
    assert cfg.data.loader.backend == backend and cfg.model.width == 8


def test_mid_epoch_resume_on_shards_is_exact(shard_dir, synth_corpus, tmp_path):
    common = [*_small(shard_dir, synth_corpus, tmp_path), "deterministic=true", "data.loader.backend=dali"]
    full = _run(["--resume", "none", "name=full", "max_steps=4", *common])
    assert full.returncode == 0, full.stderr[-3000:]
    first = _run(["--resume", "none", "name=split", "max_steps=2", *common])
    assert first.returncode == 0, first.stderr[-3000:]
    state = json.loads((tmp_path / "split/checkpoints/step_00000002/state.json").read_text())
    assert state["epoch"] == 0 and state["ranks"][0]["loader"]["batches"] == 2  # stopped inside epoch 0
    second = _run(["--resume", "auto", "name=split", "max_steps=4", *common])
    assert second.returncode == 0, second.stderr[-3000:]
    a = {x["step"]: x["train/loss"] for x in _records(tmp_path / "full") if "train/loss" in x}
    b = {x["step"]: x["train/loss"] for x in _records(tmp_path / "split") if "train/loss" in x}
    assert a == b and sorted(a) == [1, 2, 3, 4]
    wa = load_file(str(tmp_path / "full/checkpoints/step_00000004/model.safetensors"))
    wb = load_file(str(tmp_path / "split/checkpoints/step_00000004/model.safetensors"))
    assert all(bool((wa[k] == wb[k]).all()) for k in wa)
