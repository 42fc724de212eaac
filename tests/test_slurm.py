"""The slurm/ scripts on a real one-node Slurm cluster brought up on localhost (tests/slurm_cluster.py).

Skipped, with the reason, only where Slurm cannot be installed. The cluster is shared by the tests of this module.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

from tests.slurm_cluster import SlurmCluster, ensure_slurm

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
    res = __import__("subprocess").run(["bash", str(REPO / "slurm/shard.sbatch")], cwd=REPO, capture_output=True,
                                       text=True, env={**cluster.env, **env})
    assert res.returncode == 0, res.stderr
    array_id, merge_id = (int(x) for x in res.stdout.split()[1::2])
    tasks = cluster.wait(array_id, timeout=240)
    assert len(tasks) == 3 and {t["JobState"] for t in tasks} == {"COMPLETED"}, tasks
    merge = cluster.wait(merge_id, timeout=120)
    assert merge[0]["JobState"] == "COMPLETED", merge
    manifest = json.loads((out / "manifest.json").read_text())
    counts = manifest["counts"]
    assert counts["written"] + counts["failed"] + counts["missing"] == counts["listed"] > 0
    names = sorted(s["name"] for s in manifest["shards"])
    assert all((out / f"{n}.tar").exists() and (out / f"{n}.idx").exists() for n in names)
    # every part wrote only its own shards: the union of the parts is the whole plan, no shard twice
    assert len(names) == len(set(names)) >= 3
