"""Worker processes that start from a clean fork server instead of a fork of the caller.

A process that forks while another of its threads is starting or ending (DDP's, a finished DataLoader's, tqdm's
monitor) can leave the child deadlocked inside fork: on Python 3.11 the child waits forever for the interpreter's
thread-state lock (seen in CI: a 2-process training job's validation DataLoader worker stuck in
`PyOS_AfterFork_Child`). The sharder's pool and the reference loader's DataLoader workers therefore come from one
forkserver, which imports PRELOAD once, so that a worker starts without re-importing torch or PyAV.
"""
from __future__ import annotations

import multiprocessing
from multiprocessing.context import BaseContext

PRELOAD = ["pipeline.shardwork", "pipeline.loader_reference"]


def forkserver_context() -> BaseContext:
    """The forkserver context, its server preloading PRELOAD (the setting only counts before the server starts,
    which is why every user of the server asks for the same list)."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    return ctx
