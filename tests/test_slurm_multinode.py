"""slurm/train.sbatch on a two-node Slurm cluster (two slurmd, node1 and node2, on localhost; tests/slurm_cluster.py):
one training process per node, checkpoint on the time-limit warning, requeue and exact resume with both ranks holding
identical weights; and a node's training process killed mid-run ends the whole job (no rank left waiting in a
collective), after which a resubmission resumes from the last checkpoint.

Skipped, with the reason, only where Slurm cannot be installed. Marked slow (about 5 minutes on 2 cores): `make
test-slow`; the default suite runs train.sbatch on one node (tests/test_slurm.py)."""
from __future__ import annotations

import json
import os
import re
import signal
import sys
import time
from pathlib import Path

import pytest

from tests.slurm_cluster import SlurmCluster, _free_port, ensure_slurm

REPO = Path(__file__).resolve().parents[1]
MAX_STEPS = 24


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    reason = ensure_slurm()
    if reason:
        pytest.skip(reason)
    c = SlurmCluster(tmp_path_factory.mktemp("slurm2"), nodes=2, cpus=1).start()
    yield c
    c.stop()


def _records(run: Path) -> list[dict]:
    log = run / "log.jsonl"
    return [json.loads(x) for x in log.read_text().splitlines()] if log.exists() else []


def _submit(cluster: SlurmCluster, tmp_path: Path, shard_dir: Path, name: str, *extra: str) -> int:
    overrides = [f"data.shard_dir={shard_dir}", "data.synth_json=", "model.width=8", "optim.batch_size=4", "data.loader.image_size=64",
                 "data.loader.clip_seconds=1.0", "data.loader.window_seconds=1.0", "data.loader.workers=1",
                 "data.loader.backend=reference", "log_every=1", "val_every=0", "val_batches=1", "data.val_split=",
                 f"max_steps={MAX_STEPS}", "keep_checkpoints=100", *extra]
    return cluster.sbatch("--chdir", str(REPO), "--nodes=2", "--ntasks-per-node=1", "--cpus-per-task=1",
                          "--output", str(tmp_path / f"{name}-%j.out"), str(REPO / "slurm/train.sbatch"), *overrides,
                          env={"PYTHON": sys.executable,
                               "CONFIG": "trainer/configs/cpu_demo.yaml", "NAME": name,
                               "OUTPUT_ROOT": str(tmp_path / "runs"), "PROCS_PER_NODE": "1",
                               "MASTER_PORT": str(_free_port()), "OMP_NUM_THREADS": "1"})


def _wait_for_step(cluster: SlurmCluster, job: int, run: Path, step: int, out: Path) -> None:
    deadline = time.time() + 300
    while not any(r.get("step", 0) >= step and "train/loss" in r for r in _records(run)):
        assert time.time() < deadline, out.read_text() if out.exists() else "no job output"
        state = cluster.job(job)[0]["JobState"]
        assert state in ("PENDING", "RUNNING"), (state, out.read_text() if out.exists() else "")
        time.sleep(0.5)


@pytest.mark.slow
def test_two_nodes_checkpoint_on_the_warning_requeue_and_resume_exactly(cluster, shard_dir, tmp_path):
    job = _submit(cluster, tmp_path, shard_dir, "two")
    run, out = tmp_path / "runs" / "two", tmp_path / f"two-{job}.out"
    _wait_for_step(cluster, job, run, 3, out)
    cluster.warn_and_wait_requeued(job, out)
    text = out.read_text()
    assert "2 node(s) x 1 process(es), head node1 (127.0.0.1)" in text and "restart 1" in text, text
    stopped_at = int(re.search(r"stop signal: checkpoint at step (\d+)", text).group(1))
    assert 3 <= stopped_at < MAX_STEPS, text
    steps = [r["step"] for r in _records(run) if "train/loss" in r]
    assert steps == list(range(1, MAX_STEPS + 1)), steps              # none trained twice, none skipped
    for step in (stopped_at, MAX_STEPS):
        state = json.loads((run / "checkpoints" / f"step_{step:08d}" / "state.json").read_text())
        assert state["world_size"] == 2 and len(state["ranks"]) == 2
        assert state["ranks"][0]["params_sha256"] == state["ranks"][1]["params_sha256"]   # identical weights


def _trainers(name: str) -> list[int]:
    """PIDs of the training processes (trainer/train.py, not their launchers) of run `name`."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(c.endswith(b"trainer/train.py") for c in cmd) and f"name={name}".encode() in cmd \
                and b"accelerate.commands.launch" not in cmd:
            pids.append(int(proc.name))
    return pids


@pytest.mark.slow
def test_a_killed_node_process_ends_the_job_and_a_resubmission_resumes(cluster, shard_dir, tmp_path):
    job = _submit(cluster, tmp_path, shard_dir, "kill", "ckpt_every=4")
    run, out = tmp_path / "runs" / "kill", tmp_path / f"kill-{job}.out"
    _wait_for_step(cluster, job, run, 6, out)
    trainers = _trainers("kill")
    assert len(trainers) == 2, trainers
    victim = next(p for p in trainers if b"RANK=1" in Path(f"/proc/{p}/environ").read_bytes().split(b"\0"))
    os.kill(victim, signal.SIGKILL)                                   # node2's training process dies
    info = cluster.wait(job, timeout=120)[0]
    assert info["JobState"] == "FAILED", (info, out.read_text())
    deadline = time.time() + 30
    while _trainers("kill") and time.time() < deadline:             # no rank left waiting in a collective
        time.sleep(0.5)
    assert not _trainers("kill")
    last = max(int(d.name[5:]) for d in (run / "checkpoints").glob("step_*"))
    assert last >= 4
    again = _submit(cluster, tmp_path, shard_dir, "kill", "ckpt_every=4")
    info = cluster.wait(again, timeout=600)[0]
    text = (tmp_path / f"kill-{again}.out").read_text()
    assert info["JobState"] == "COMPLETED", text
    assert f"resumed from {run / 'checkpoints' / f'step_{last:08d}'} (step {last}" in text, text
    steps = [r["step"] for r in _records(run) if "train/loss" in r]
    assert steps[-1] == MAX_STEPS and sorted(set(steps)) == list(range(1, MAX_STEPS + 1))
