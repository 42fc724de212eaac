"""Worker processes: how many by default, and the clean fork server they start from.

`default_workers(n)`: n when positive, else the cores this process may run on (its CPU affinity, so a Slurm job or a
`taskset` gets its share, not the whole machine); every stage's `workers = 0` means this.

Worker processes start from a clean fork server instead of a fork of the caller.

A process that forks while another of its threads is starting or ending (DDP's, a finished DataLoader's, tqdm's
monitor) can leave the child deadlocked inside fork: on Python 3.11 the child waits forever for the interpreter's
thread-state lock (seen in CI: a 2-process training job's validation DataLoader worker stuck in
`PyOS_AfterFork_Child`). The sharder's pool and the reference loader's DataLoader workers therefore come from the
process's one forkserver, which imports the modules its users name once, so that a worker starts without
re-importing them (the sharder's workers need PyAV, the loader's torch: neither pays for the other's imports).
"""
from __future__ import annotations

import multiprocessing
import os
from multiprocessing.context import BaseContext

_PRELOAD: set[str] = set()


def forkserver_context(*preload: str) -> BaseContext:
    """The forkserver context, its server preloading `preload` and every module asked for before in this process.

    The list only counts until the server starts (at the first worker): a process that uses both the sharder and
    the reference loader (the test session) names both modules at its first call."""
    _PRELOAD.update(preload)
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(sorted(_PRELOAD))
    return ctx


def default_workers(requested: int = 0) -> int:
    """`requested` when positive, else the number of cores this process may run on."""
    return requested if requested > 0 else len(os.sched_getaffinity(0))
