"""The slurm/ scripts on a real one-node Slurm cluster brought up on localhost (tests/slurm_cluster.py).

Skipped, with the reason, only where Slurm cannot be installed. The cluster is shared by the tests of this module.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.slurm_cluster import SlurmCluster, _free_port, ensure_slurm

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    reason = ensure_slurm()
    if reason:
        pytest.skip(reason)
    c = SlurmCluster(tmp_path_factory.mktemp("slurm")).start()
    yield c
    c.stop()


def _env(**extra: str) -> dict:
    return {"PYTHON": sys.executable, **extra}


def test_shard_array_and_merge(cluster: SlurmCluster, synth_corpus: Path, tmp_path: Path):
    out = tmp_path / "shards"
    env = _env(SRC=str(synth_corpus), OUT=str(out), PARTS="3", CPUS="1",
               SHARD_ARGS="--shard-size 3 --val-fraction 0.2 min_duration=1.5")
    res = subprocess.run(["bash", str(REPO / "slurm/shard.sbatch")], cwd=tmp_path, capture_output=True, text=True,
                         env={**cluster.env, **env})  # job logs land in tmp_path
    assert res.returncode == 0, res.stderr
    array_id, merge_id = (int(x) for x in res.stdout.split()[1::2])
    tasks = cluster.wait(array_id, timeout=240)
    assert len(tasks) == 3 and {t["JobState"] for t in tasks} == {"COMPLETED"}, tasks
    merge = cluster.wait(merge_id, timeout=120)
    assert merge[0]["JobState"] == "COMPLETED", merge
    manifest = json.loads((out / "manifest.json").read_text())
    counts = manifest["counts"]
    assert counts["written"] + counts["failed"] + counts["missing"] + counts["excluded"] == counts["listed"] > 0
    names = sorted(s["name"] for s in manifest["shards"])
    assert all((out / f"{n}.tar").exists() and (out / f"{n}.idx").exists() for n in names)
    # every part wrote only its own shards: the union of the parts is the whole plan, no shard twice
    assert len(names) == len(set(names)) >= 3


def _train_records(run: Path) -> list[dict]:
    log = run / "log.jsonl"
    return [json.loads(x) for x in log.read_text().splitlines()] if log.exists() else []


def test_train_job_checkpoints_on_warning_requeues_and_resumes(cluster: SlurmCluster, shard_dir: Path,
                                                               synth_corpus: Path, tmp_path: Path):
    """2 gloo processes under srun + accelerate launch; the time-limit warning (USR1 to the batch script) makes the
    trainer checkpoint and exit, the script requeues the job, and the second start resumes from that checkpoint."""
    runs, max_steps = tmp_path / "runs", 40
    overrides = [f"data.shard_dir={shard_dir}", f"data.synth_json={synth_corpus / 'synth.json'}", "model.width=8",
                 "optim.batch_size=4", "data.loader.image_size=64", "data.loader.clip_seconds=1.0",
                 "data.loader.window_seconds=1.0", "data.loader.workers=1", "data.loader.backend=reference",
                 "log_every=1", "val_every=0", "ckpt_every=0", "val_batches=1", f"max_steps={max_steps}"]
    job = cluster.sbatch("--chdir", str(REPO), "--output", str(tmp_path / "train-%j.out"), "--cpus-per-task=2",
                         str(REPO / "slurm/train.sbatch"), *overrides,
                         env=_env(CONFIG="trainer/configs/cpu_demo.yaml", NAME="slurm", OUTPUT_ROOT=str(runs),
                                  PROCS_PER_NODE="2", MASTER_PORT=str(_free_port()), OMP_NUM_THREADS="1"))
    run = runs / "slurm"
    deadline = time.time() + 300
    while not any(r.get("step", 0) >= 3 and "train/loss" in r for r in _train_records(run)):
        assert time.time() < deadline, (tmp_path / f"train-{job}.out").read_text()
        assert cluster.job(job)[0]["JobState"] in ("PENDING", "RUNNING"), (tmp_path / f"train-{job}.out").read_text()
        time.sleep(0.5)
    cluster.warn_and_wait_requeued(job, tmp_path / f"train-{job}.out")
    out = (tmp_path / f"train-{job}.out").read_text()
    assert "requeueing job" in out and "restart 1" in out, out
    steps = [r["step"] for r in _train_records(run) if "train/loss" in r]
    stopped_at = int(re.search(r"stop signal: checkpoint at step (\d+)", out).group(1))
    # the first start checkpointed mid-run on the warning; the second resumed exactly there (no step trained twice,
    # none skipped) and finished
    assert 3 <= stopped_at < max_steps, out
    assert steps == list(range(1, max_steps + 1)), steps
    assert not (run / "STOP").exists()
