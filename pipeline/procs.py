"""Worker processes that start from a clean fork server instead of a fork of the caller.

A process that forks while another of its threads is starting or ending (DDP's, a finished DataLoader's, tqdm's
monitor) can leave the child deadlocked inside fork: on Python 3.11 the child waits forever for the interpreter's
thread-state lock (seen in CI: a 2-process training job's validation DataLoader worker stuck in
`PyOS_AfterFork_Child`). The sharder's pool and the reference loader's DataLoader workers therefore come from the
process's one forkserver, which imports the modules its users name once, so that a worker starts without
re-importing them (the sharder's workers need PyAV, the loader's torch: neither pays for the other's imports).
"""
from __future__ import annotations

import multiprocessing
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
