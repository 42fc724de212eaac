"""The sharding benchmark behind `python -m pipeline.bench shard`: sharding throughput (clips/s, median of repeats) for
1, 2, ... workers and one or more audio formats on a synthetic corpus made by `pipeline.synth` (10 s clips, only those
whose short side is 360 px by default); every repeat runs each (format, quality figures on or off, workers) variant
once, interleaved, so that a drifting machine hits them alike (`--quality on,off` gives the ratio the quality figures
cost). Plus a per-stage profile (CPU time of audio decode, resampling, centre frame, JPEG, each audio encoding, each
with its validation; and the quality figures), which stays meaningful when other jobs load the machine, and a control:
the speed-up that the same number of pure-Python busy loops gets on the machine before and after (if that is ~1, the
machine had no core to spare for scaling).
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import av

from pipeline.common.cli import UserError
from pipeline.shard import media
from pipeline.shard.sharder import ShardConfig, run as run_sharder
from pipeline.synth.corpus import SynthConfig, SynthError, generate


class BenchError(UserError):
    """A user error (bad option, unusable corpus folder)."""


def machine() -> dict:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": model or platform.processor(), "cores": len(os.sched_getaffinity(0)),
            "python": platform.python_version(), "pyav": av.__version__, "ffmpeg": av.library_versions["libavcodec"]}


# ------------------------------------------------------------------------------------------------------ shard
def shard_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--corpus", help="folder of a synthetic corpus: used as it is when complete, else made with "
                                    "--clips and --seconds (default: a temporary folder)")
    p.add_argument("--clips", type=int, default=120, help="clips in the corpus (about half have short side 360)")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--min-duration", type=float, default=ShardConfig.min_duration, dest="min_duration",
                   help="the sharder's min_duration (lower it for corpora of short clips)")
    p.add_argument("--short-side", type=int, default=360, help="only clips whose short side is this (0: all)")
    p.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--audio-format", default=ShardConfig.audio_format, dest="audio_format",
                   help="comma-separated audio formats of the sharder (wav, flac), measured interleaved")
    p.add_argument("--quality", default="on",
                   help="with (on) or without (off) the quality figures, comma-separated: on,off measures both, "
                        "interleaved, and reports their ratio")
    p.add_argument("--control-seconds", type=float, default=1.0, dest="control_seconds",
                   help="length of the busy-loop control before and after (0: no control)")
    p.add_argument("--json", help="also write the results to this JSON file")


def _spin(ready, go, window, results) -> None:
    """Say it is running, wait for the window to be set, then put the busy-loop iterations done inside that
    time.monotonic() window (one clock for all processes)."""
    ready.put(None)
    go.wait()
    start, end = window[0], window[1]
    while time.monotonic() < start:
        time.sleep(0.001)
    n = 0
    while time.monotonic() < end:
        for _ in range(10000):
            n += 1
    results.put(n)


def machine_scaling(processes: int = 2, seconds: float = 1.0, setup: float = 0.2) -> float:
    """Control for a shared machine: the speed-up `processes` pure-Python busy loops get over one, right now
    (about `processes` on an idle machine with that many cores; about 1 when other jobs already fill the cores).
    All loops count within one time window that opens `setup` seconds after every one of them is running (however
    long the process start takes), so no loop misses part of its window."""
    ctx = multiprocessing.get_context("forkserver")
    counts = []
    for n in (1, processes):
        ready, go, results = ctx.SimpleQueue(), ctx.Event(), ctx.SimpleQueue()
        window = ctx.Array("d", 2)
        procs = [ctx.Process(target=_spin, args=(ready, go, window, results)) for _ in range(n)]
        for p in procs:
            p.start()
        for _ in procs:
            ready.get()
        start = time.monotonic() + setup
        window[0], window[1] = start, start + seconds
        go.set()
        counts.append(sum(results.get() for _ in procs))
        for p in procs:
            p.join()
    return counts[1] / counts[0]


def _median_ms(fn: Callable[[], object], repeats: int) -> tuple[float, object]:
    """Median CPU milliseconds of this process (not wall time: other jobs on the machine do not count)."""
    times, result = [], None
    for _ in range(repeats):
        t = time.process_time()
        result = fn()
        times.append(time.process_time() - t)
    return statistics.median(times) * 1000, result


def profile_clip(path: Path, frame_size: int, audio_formats: list[str], repeats: int = 3) -> dict[str, float]:
    """Median CPU milliseconds of each stage of sharding one clip (the stages that pipeline.shard.media.decode_video
    chains)."""
    def audio_frames():
        with av.open(str(path)) as c:
            return media.decode_audio_frames(c)[0]

    def centre():
        with av.open(str(path)) as c:
            v = c.streams.video[0]
            v.codec_context.thread_count = 1
            start = float(v.start_time * v.time_base) if v.start_time is not None else 0.0
            frame = media.frame_at(c, v, start + float(v.duration * v.time_base) / 2)
            return media.frame_image(frame, frame_size)

    out = {}
    out["audio_decode"], frames = _median_ms(audio_frames, repeats)
    out["resample"], audio = _median_ms(lambda: media.resample_mono16k(frames), repeats)
    out["centre_frame_scaled"], image = _median_ms(centre, repeats)

    def jpeg():  # `image` is already at the stored size (frame_image scaled it)
        media.check_jpeg(media.encode_jpeg(image, 90), image.size)

    out["jpeg_encode_check"], _ = _median_ms(jpeg, repeats)

    def decode(silence_dbfs):
        return lambda: media.decode_video(path, min_duration=0.0, short_side=frame_size, silence_dbfs=silence_dbfs)

    # what the figures add to decoding a clip: the median with them less the median without (repeats interleaved)
    with_ms, without_ms = [], []
    for _ in range(repeats):
        with_ms.append(_median_ms(decode(-60.0), 1)[0])
        without_ms.append(_median_ms(decode(None), 1)[0])
    out["quality_figures"] = statistics.median(with_ms) - statistics.median(without_ms)
    for fmt in audio_formats:
        out[f"{fmt}_encode_check"], _ = _median_ms(
            lambda: media.check_audio(media.encode_audio(audio, fmt), audio.size), repeats)
    return out


def bench_shard(args: argparse.Namespace) -> dict:
    try:
        worker_counts = [int(w) for w in args.workers.split(",") if w]
    except ValueError:
        raise BenchError(f"--workers {args.workers!r}: expected comma-separated integers") from None
    if not worker_counts or min(worker_counts) < 1 or args.repeats < 1 or args.clips < 1:
        raise BenchError("--workers, --repeats and --clips must be positive")
    formats = [f for f in args.audio_format.split(",") if f]
    if not formats or set(formats) - {"wav", "flac"}:
        raise BenchError(f"--audio-format {args.audio_format!r}: expected wav and/or flac, comma-separated")
    qualities = [q for q in args.quality.split(",") if q]
    if not qualities or set(qualities) - {"on", "off"} or len(set(qualities)) < len(qualities):
        raise BenchError(f"--quality {args.quality!r}: expected on and/or off, comma-separated")
    # what is measured: (variant name, audio format, quality figures on)
    variants = [(f if q == "on" else f"{f}/no-quality", f, q == "on") for f in formats for q in qualities]
    scratch = Path(tempfile.mkdtemp(prefix="bench-shard-"))
    try:
        corpus = Path(args.corpus) if args.corpus else scratch / "corpus"
        meta_path = corpus / "synth.json"
        if not (meta_path.exists() and json.loads(meta_path.read_text()).get("complete")):
            print(f"making corpus {corpus}: {args.clips} clips of {args.seconds:g} s", file=sys.stderr)
            try:
                generate(SynthConfig(out=str(corpus), clips=args.clips, seconds=args.seconds, is3_images=0,
                                     s4_videos=0, clean_per_class=0))
            except SynthError as exc:
                raise BenchError(f"{corpus}: {exc}") from None
        clips = [c for c in json.loads(meta_path.read_text())["clips"]
                 if c["split"] == "train" and (not args.short_side or min(c["width"], c["height"]) == args.short_side)]
        if not clips:
            raise BenchError(f"{corpus}: no training clip with short side {args.short_side}")
        (scratch / "list.txt").write_text("".join(c["id"] + "\n" for c in clips))
        sizes = sorted({f"{c['width']}x{c['height']}" for c in clips})
        runs: dict[str, dict[int, list[float]]] = {v: {w: [] for w in worker_counts} for v, _, _ in variants}
        load_before = os.getloadavg()
        control = (lambda: machine_scaling(max(worker_counts), args.control_seconds)) if args.control_seconds > 0 \
            else (lambda: None)
        control_before = control()
        for r in range(args.repeats):  # variants and worker counts interleaved: other jobs' load hits them alike
            for name, fmt, quality in variants:
                for workers in worker_counts:
                    out = scratch / f"shards-{name.replace('/', '-')}-w{workers}-r{r}"
                    cfg = ShardConfig(src=str(corpus), out=str(out), list=str(scratch / "list.txt"),
                                      val_fraction=0.0, workers=workers, audio_format=fmt,
                                      min_duration=args.min_duration, quality=quality)
                    t = time.perf_counter()
                    summary = run_sharder(cfg, progress=False)
                    elapsed = time.perf_counter() - t
                    if summary.written != len(clips):
                        raise BenchError(f"{out}: wrote {summary.written} of {len(clips)} clips; see failures.jsonl")
                    runs[name][workers].append(len(clips) / elapsed)
                    shutil.rmtree(out)
                    print(f"{name} workers {workers} repeat {r}: {len(clips) / elapsed:.1f} clips/s", file=sys.stderr)
        load_after = os.getloadavg()
        control_after = control()
        stages = [profile_clip(corpus / "video" / f"{c['id']}.mp4", 256, formats) for c in clips]
        profile = {k: round(statistics.median(s[k] for s in stages), 2) for k in stages[0]}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    median = {f: {w: statistics.median(v) for w, v in by_w.items()} for f, by_w in runs.items()}
    shared = [k for k in profile if not k.endswith("_encode_check") and k != "quality_figures"]
    result = {
        "benchmark": "shard", "machine": machine(), "corpus": str(corpus), "clips": len(clips),
        "seconds": sorted({c["duration"] for c in clips}),
        "sizes": sizes, "audio_formats": formats, "quality": qualities, "repeats": args.repeats,
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in load_after],
        f"control_busy_loop_speedup_{max(worker_counts)}_vs_1": [
            None if c is None else round(c, 2) for c in (control_before, control_after)],
        # per audio format, then per worker count
        "clips_per_s": {f: {str(w): round(v, 2) for w, v in m.items()} for f, m in median.items()},
        "clips_per_s_per_worker": {f: {str(w): round(v / w, 2) for w, v in m.items()} for f, m in median.items()},
        "scaling_vs_first": {f: {str(w): round(v / m[worker_counts[0]], 2) for w, v in m.items()}
                             for f, m in median.items()},
        "all_runs_clips_per_s": {f: {str(w): [round(x, 2) for x in v] for w, v in by_w.items()}
                                 for f, by_w in runs.items()},
        # clips/s with the quality figures over clips/s without them (medians; each pair ran in the same repeats)
        "quality_over_no_quality": {f: {str(w): round(median[f][w] / median[f"{f}/no-quality"][w], 3)
                                        for w in worker_counts} for f in formats} if len(qualities) == 2 else None,
        "profile_cpu_ms_median_per_clip": profile,
        # what one core could do if it did nothing else: 1000 / the sum of the stages' CPU times (without the quality
        # figures: their CPU time is the profile's quality_figures)
        "cpu_bound_clips_per_s_per_worker": {
            f: round(1000 / (sum(profile[k] for k in shared) + profile[f"{f}_encode_check"]), 2) for f in formats},
    }
    print("shard: " + "; ".join(f"{v}: " + ", ".join(f"{w} worker(s) {result['clips_per_s'][v][str(w)]} clips/s"
                                                     for w in worker_counts) for v, _, _ in variants)
          + f" on {len(clips)} clips; load average {result['load_average_before'][0]} -> "
          f"{result['load_average_after'][0]}; busy-loop control speed-up "
          f"{result[f'control_busy_loop_speedup_{max(worker_counts)}_vs_1']}", file=sys.stderr)
    return result
