"""The sharder's per-clip work, run in worker processes: find a clip's input files, decode, encode, validate.

`process_clip` returns the clip's webdataset members or a failure record `{"id", "path", "reason", "detail"}`;
`scan_clip` its quality figures or the failure; neither raises for a bad input (a bug still raises). An input that is
not a regular file (a FIFO, a device, a folder) is a failure before anything opens it: opening a FIFO would wait
forever. `ClipPool` runs it in worker processes and survives a worker that dies inside FFmpeg (the clip responsible is
found by re-running clips one at a time and recorded as corrupt) and a clip that stalls: a clip whose result has not
come `timeout` seconds after the one before it (results come in clip order, so it has been running at least that long)
is recorded as `timeout`, the workers are killed and new ones go on with the next clip.
"""
from __future__ import annotations

import os
import select
import stat
import threading
import time
from concurrent.futures import ProcessPoolExecutor, TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from pipeline.common import procs
from pipeline.shard import listing, media


@dataclass(frozen=True)
class ClipOptions:
    frames: int
    min_duration: float
    frame_size: int
    audio_format: str
    jpeg_quality: int
    silence_dbfs: float | None = None     # None: no quality figures


_STATE: dict = {}


def init_worker(opts: ClipOptions, layout: listing.Layout, sharder_pid: int) -> None:
    _STATE["opts"] = opts
    _STATE["layout"] = layout
    _exit_with(sharder_pid)


def _exit_with(pid: int) -> None:
    """End this worker when the sharder process `pid` ends, `kill -9` included (its workers are children of the
    forkserver, not of the sharder, and would otherwise live on, stalled ones forever)."""
    def watch() -> None:
        try:
            fd = os.pidfd_open(pid)
            select.select([fd], [], [])        # readable once the process has ended
        except OSError:                        # no pidfd (old kernel): poll
            while os.path.exists(f"/proc/{pid}"):
                time.sleep(1.0)
        os._exit(1)
    threading.Thread(target=watch, name="exit-with-sharder", daemon=True).start()


def failure(cid: str, layout: listing.Layout, reason: str, detail: str) -> dict:
    inputs = layout.inputs(cid)
    path = inputs.get("video") or f"{inputs['frames']} + {inputs['audio']}"
    return {"id": cid, "path": path, "reason": reason, "detail": detail}


def _regular(path: str | Path) -> bool:
    """True for a regular file; False when nothing is there; MediaError for anything else (a FIFO, a device, a
    folder: opening some of them never returns)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise media.MediaError("unreadable", f"{path}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(mode):
        raise media.MediaError("unreadable", f"{path}: not a regular file")
    return True


def _decode(cid: str, layout: listing.Layout, opts: ClipOptions) -> media.Clip:
    inputs = layout.inputs(cid)
    if layout.kind == "video":
        if not _regular(inputs["video"]):
            raise media.MediaError("missing", "file does not exist")
        return media.decode_video(inputs["video"], frames=opts.frames, min_duration=opts.min_duration,
                                  short_side=opts.frame_size, silence_dbfs=opts.silence_dbfs)
    frames_dir, frame = Path(inputs["frames"]), Path(inputs["frame"])
    if frames_dir.is_dir():
        frame_paths = [p for p in frames_dir.glob("*.jpg") if _regular(p)]
    elif _regular(frame):
        frame_paths = [frame]
    else:
        raise media.MediaError("missing", f"neither {frames_dir}/ nor {frame} exists")
    if not _regular(inputs["audio"]):
        raise media.MediaError("missing", f"{inputs['audio']} does not exist")
    return media.decode_extracted(frame_paths, Path(inputs["audio"]), frames=opts.frames,
                                  min_duration=opts.min_duration, silence_dbfs=opts.silence_dbfs)


def process_clip(clip: list) -> tuple[str, dict[str, bytes] | None, dict | None]:
    """One planned clip `[id, ytid, start, label, class_index, split]` -> (id, members, None) or (id, None, failure).

    `split` is the clip's shard split (train, val or test).
    """
    opts: ClipOptions = _STATE["opts"]
    layout: listing.Layout = _STATE["layout"]
    cid, ytid, start, label, class_index, split = clip
    try:
        decoded = _decode(cid, layout, opts)
        meta = {"id": cid, "ytid": ytid, "start": start, "label": label, "class_index": class_index,
                "split": split}
        members = media.encode_sample(decoded, meta, frame_size=opts.frame_size, audio_format=opts.audio_format,
                                      jpeg_quality=opts.jpeg_quality)
        return cid, members, None
    except media.MediaError as err:
        return cid, None, failure(cid, layout, err.reason, err.detail)


def scan_clip(clip: list) -> tuple[str, dict | None, dict | None]:
    """A planned clip -> (id, its quality figures, None) or (id, None, failure): the decoding of `process_clip`
    without the encoding (the duplicate scan before sharding)."""
    cid = clip[0]
    try:
        return cid, _decode(cid, _STATE["layout"], _STATE["opts"]).quality, None
    except media.MediaError as err:
        return cid, None, failure(cid, _STATE["layout"], err.reason, err.detail)


Result = tuple[str, dict | None, dict | None]


class ClipPool:
    """`map(clips)` yields `work(clip)` results in clip order from `workers` processes (forkserver: started clean even
    when the caller holds threads, e.g. DALI or torch)."""

    def __init__(self, opts: ClipOptions, layout: listing.Layout, workers: int,
                 work: Callable[[list], Result] = process_clip, timeout: float = 0.0):
        self.args = (opts, layout, os.getpid())
        self.workers = workers
        self.work = work
        self.timeout = timeout if timeout > 0 else None
        self.ctx = procs.forkserver_context("pipeline.shard.work")
        self.pool: ProcessPoolExecutor | None = None

    def _new_pool(self, workers: int) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(workers, mp_context=self.ctx, initializer=init_worker, initargs=self.args)

    def __enter__(self) -> "ClipPool":
        self.pool = self._new_pool(self.workers)
        return self

    def __exit__(self, *exc) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)

    def map(self, clips: list[list]) -> Iterator[Result]:
        i = 0
        while i < len(clips):
            try:  # submit raises too when a worker has already died
                futures = [self.pool.submit(self.work, c) for c in clips[i:]]
                for future in futures:
                    result = future.result(timeout=self.timeout)
                    i += 1
                    yield result
            except FutureTimeout:
                _kill(self.pool)
                self.pool = self._new_pool(self.workers)
                yield self._timed_out(clips[i])
                i += 1
            except BrokenProcessPool:
                self.pool.shutdown(wait=True, cancel_futures=True)
                self.pool = self._new_pool(self.workers)
                yield self._alone(clips[i])
                i += 1

    def _timed_out(self, clip: list) -> Result:
        return clip[0], None, failure(clip[0], self.args[1], "timeout",
                                      f"no result after {self.timeout:g} s (clip_timeout)")

    def _alone(self, clip: list) -> Result:
        """Run one clip in a process of its own: its result, or a corrupt record if that process dies too."""
        with self._new_pool(1) as single:
            try:
                return single.submit(self.work, clip).result(timeout=self.timeout)
            except BrokenProcessPool:
                pass
            except FutureTimeout:
                _kill(single)
                return self._timed_out(clip)
        with self._new_pool(1) as probe:  # a worker that dies doing nothing means the pool itself is broken
            try:
                probe.submit(os.getpid).result()
            except BrokenProcessPool:
                raise RuntimeError("sharder worker processes die on start; see the log above") from None
        return clip[0], None, failure(clip[0], self.args[1], "corrupt", "the decoder crashed (its worker process died)")


def _kill(pool: ProcessPoolExecutor) -> None:
    """End a pool now, its stalled workers included (a stalled worker never returns to be shut down)."""
    for proc in list(getattr(pool, "_processes", {}).values()):
        proc.kill()
    pool.shutdown(wait=True, cancel_futures=True)
