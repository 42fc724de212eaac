"""Test helpers: derive broken inputs from a good mp4 by stream copy (no re-encoding, no second mp4 writer),
sharder work functions whose worker process dies on one clip, or stalls on one, a sharder killed mid-run, and a shard
folder's files as bytes (to compare two runs)."""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import av

from pipeline.shard import work as shardwork

CRASH_LABEL = "CRASH"
STALL_LABEL = "STALL"


def remux(src: Path, dst: Path, *, audio: bool = True, seconds: float | None = None) -> None:
    """Copy `src` to `dst`: the video stream, the audio stream only if `audio`, only packets before `seconds`."""
    with av.open(str(src)) as inp, av.open(str(dst), "w", format="mp4") as out:
        streams = [inp.streams.video[0]] + ([inp.streams.audio[0]] if audio else [])
        mapping = {s.index: out.add_stream_from_template(s) for s in streams}
        for packet in inp.demux(*streams):
            if packet.dts is None:
                continue
            if seconds is not None and packet.pts is not None and packet.pts * packet.time_base >= seconds:
                continue
            packet.stream = mapping[packet.stream.index]
            out.mux(packet)


def crashing_work(clip: list):
    """shardwork.process_clip, except that the worker process dies (as in a crash inside FFmpeg) on CRASH_LABEL."""
    if clip[3] == CRASH_LABEL:
        os._exit(3)
    return shardwork.process_clip(clip)


def stalling_work(clip: list):
    """shardwork.process_clip, except that the worker never returns (as on a hung network mount) on STALL_LABEL."""
    if clip[3] == STALL_LABEL:
        time.sleep(3600)
    return shardwork.process_clip(clip)


def kill_when(cmd: list[str], cwd: Path, folder: Path, count: int, pattern: str = "*-*.json") -> None:
    """Run `cmd` and SIGKILL it as soon as `folder` holds `count` files matching `pattern` (or after 120 s)."""
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while len(list(folder.glob(pattern))) < count and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


def tree_bytes(root: Path, skip: tuple[str, ...] = ("config.yaml",)) -> dict[str, bytes]:
    """Every file below `root` (hidden state included) and its bytes, but those named in `skip` (the saved config
    records the worker count, which may differ between two runs of the same job)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name not in skip}
