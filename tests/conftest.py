"""Shared pytest fixtures.

`synth_corpus`: one tiny synthetic VGGSound-like corpus per test session (24 clips of 2 s, 4 classes, small IS3/S4
test sets), made by `pipeline.synth` with two workers; tests must treat it as read-only.
`shard_dir`: that corpus's training clips sharded by `pipeline.shard` (train-*/val-* tars); read-only too.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.common import procs
from pipeline.shard.sharder import ShardConfig, run as run_sharder
from pipeline.synth.corpus import SynthConfig, generate

# the session shards and loads in one process: its one forkserver preloads what both kinds of worker import
procs.forkserver_context("pipeline.shard.work", "pipeline.load.reference")

SYNTH_FIXTURE = dict(clips=24, seconds=2.0, classes=4, seed=7, test_fraction=0.25, offscreen_fraction=0.15,
                     is3_images=4, s4_videos=4, clean_per_class=2, workers=2)


@pytest.fixture(scope="session")
def synth_corpus(tmp_path_factory) -> Path:
    """Path of the session's synthetic corpus (vggsound.csv, video/, testsets/, synth.json)."""
    out = tmp_path_factory.mktemp("synth") / "vggsound"
    return generate(SynthConfig(out=str(out), **SYNTH_FIXTURE), progress=False)


SHARD_FIXTURE = dict(shard_size=5, val_fraction=0.2, min_duration=1.5, workers=2)


@pytest.fixture(scope="session")
def shard_dir(synth_corpus, tmp_path_factory) -> Path:
    """Shards of `synth_corpus`'s training clips made by `pipeline.shard` (train-* and val-* tars of at most 5 clips,
    DALI indexes, manifest.json, failures.jsonl); read-only."""
    out = tmp_path_factory.mktemp("shards") / "vggsound"
    run_sharder(ShardConfig(src=str(synth_corpus), out=str(out), **SHARD_FIXTURE), progress=False)
    return out
