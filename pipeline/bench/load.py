"""The loader benchmark behind `python -m pipeline.bench load`: samples/s of the DALI loader, the reference loader and
SSL-TIE's per-file baseline (pipeline.bench.baseline) on the same clips, augmentations and machine.

The loaders take turns, one epoch each (`warmup` unmeasured rounds, then `epochs` measured ones), so that a machine
whose speed drifts within minutes slows them alike. An epoch's rate is its samples over the wall time from asking
for the first batch to receiving the last (DALI's per-epoch pipeline build and DataLoader worker start-up
included; the time to the first batch is reported too), and its CPU cost is the CPU time of the process and its
finished worker processes per sample (less sensitive than wall time to other jobs on a shared machine; the
reference loader's workers come from the forkserver, whose reaped children's CPU time is read from /proc). The
process runs torch on `torch_threads` (1) threads, as DataLoader workers do: on a small machine the intra-op pool's
waiting threads otherwise take CPU from DALI's threads. The report (`{out}/load.json`, plus the resolved
`config.yaml`) gives every epoch's rate, the medians per loader, the load average and the DALI / baseline ratios.
"""
from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import sys
import time
from dataclasses import dataclass, field
from multiprocessing import forkserver
from pathlib import Path

import torch
from tqdm import tqdm

from pipeline.bench.baseline import build_baseline, extract_clips
from pipeline.common.atomic import atomic_write_json
from pipeline.common.config import ConfigError, load_config, save_config
from pipeline.load.build import build_loader
from pipeline.load.contract import LoaderConfig
from pipeline.load.shards import ShardSet


@dataclass
class BenchLoadConfig:
    shards: str = "shards/vggsound"
    split: str = "train"
    out: str = "bench/load"
    epochs: int = 5
    warmup: int = 1
    train: bool = True                    # training augmentation (moco_v2 + SpecAugment) in all three
    # backend, or backend:device to run one on another device than `loader.device` (e.g. [dali:cuda, dali:cpu])
    loaders: list[str] = field(default_factory=lambda: ["dali", "reference", "baseline"])
    loader: LoaderConfig = field(default_factory=LoaderConfig)
    seed: int = 0
    torch_threads: int = 1                # intra-op threads of this process while measuring (0: torch's default)


def _forkserver_cpu_seconds() -> float:
    """CPU time of the forkserver (pipeline.common.procs) and of the finished workers it started and reaped (the
    reference loader's DataLoader workers are its children, not this process's): utime, stime, cutime, cstime of its
    /proc stat; 0 when no server runs."""
    pid = forkserver._forkserver._forkserver_pid
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def _cpu_seconds() -> float:
    """CPU time of this process (DALI threads included), of its finished children (the baseline's DataLoader
    workers) and of the forkserver's (the reference loader's workers)."""
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + kids.ru_utime + kids.ru_stime + _forkserver_cpu_seconds()


def _epoch_rate(batches) -> tuple[float, float, int, float]:
    """(samples per wall second, CPU milliseconds per sample, samples, seconds to the first batch) of one epoch."""
    start, cpu = time.perf_counter(), _cpu_seconds()
    n, first = 0, None
    for b in batches:
        n += len(b.key) if hasattr(b, "key") else len(b[-1])
        first = time.perf_counter() - start if first is None else first
    return n / (time.perf_counter() - start), (_cpu_seconds() - cpu) * 1000 / n, n, first


def _epoch_rate_on(device: str):
    """`_epoch_rate`, waiting for a GPU's queued work at the end of the epoch so that its time counts."""
    def rate(batches):
        if device != "cuda":
            return _epoch_rate(batches)

        def synced():
            yield from batches
            torch.cuda.synchronize()
        return _epoch_rate(synced())
    return rate


def _parse_loader(name: str, default_device: str) -> tuple[str, str]:
    backend, _, device = name.partition(":")
    if backend not in ("dali", "reference", "baseline") or device not in ("", "cpu", "cuda") or \
            (backend == "baseline" and device == "cuda"):
        raise ConfigError(f"loaders: unknown loader {name!r}: choose among dali, reference, baseline, each "
                          f"optionally with :cpu or :cuda (not the baseline)")
    return backend, device or default_device


def run(cfg: BenchLoadConfig, progress: bool = True) -> dict:
    parsed = {name: _parse_loader(name, cfg.loader.device) for name in cfg.loaders}
    out = Path(cfg.out)
    shards = ShardSet.open(cfg.shards, cfg.split)
    lc = cfg.loader
    if cfg.torch_threads > 0:
        torch.set_num_threads(cfg.torch_threads)
    load_before = os.getloadavg()
    loaders = {}
    for name, (backend, device) in parsed.items():
        if backend == "baseline":
            items = extract_clips(shards, out / "clips", progress=progress)
            loaders[name] = build_baseline(out / "clips", items, batch_size=lc.batch_size, image_size=lc.image_size,
                                           train=cfg.train, window_seconds=lc.window_seconds,
                                           clip_seconds=lc.clip_seconds, audio_window=lc.audio_window,
                                           workers=lc.workers)
        else:
            loaders[name] = build_loader(LoaderConfig(**{**vars(lc), "backend": backend, "device": device}),
                                         cfg.shards, split=cfg.split, train=cfg.train, seed=cfg.seed)
    rates = {name: [] for name in loaders}
    cpu_ms = {name: [] for name in loaders}
    first = {name: [] for name in loaders}
    samples = {}
    for e in tqdm(range(cfg.warmup + cfg.epochs), desc="bench load epochs", disable=not progress):
        for name, loader in loaders.items():   # one epoch of each in turn: a drifting machine hits them alike
            if hasattr(loader, "set_epoch"):
                loader.set_epoch(e)
            rate, ms, samples[name], latency = _epoch_rate_on(parsed[name][1])(loader)
            if e >= cfg.warmup:
                rates[name].append(rate)
                cpu_ms[name].append(ms)
                first[name].append(latency)
    results = {name: {"samples_per_epoch": samples[name], "epoch_rates": [round(r, 2) for r in rates[name]],
                      "median_samples_per_s": round(statistics.median(rates[name]), 2),
                      "median_cpu_ms_per_sample": round(statistics.median(cpu_ms[name]), 2),
                      "median_s_to_first_batch": round(statistics.median(first[name]), 3)}
               for name in loaders}
    report = {"results": results, "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                                              "torch": torch.__version__, "device": lc.device,
                                              "torch_threads": torch.get_num_threads(),
                                              "load_average_before": load_before}}
    if "dali" in results and "baseline" in results:
        report["dali_over_baseline"] = round(results["dali"]["median_samples_per_s"]
                                             / results["baseline"]["median_samples_per_s"], 2)
        report["baseline_cpu_over_dali_cpu"] = round(results["baseline"]["median_cpu_ms_per_sample"]
                                                     / results["dali"]["median_cpu_ms_per_sample"], 2)
    report["machine"]["load_average_after"] = os.getloadavg()
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "config.yaml")
    atomic_write_json(out / "load.json", report)
    return report


def load_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML BenchLoadConfig")
    p.add_argument("--shards", help="shard folder (default shards/vggsound)")
    p.add_argument("--out", help="report folder (default bench/load)")
    p.add_argument("--epochs", type=int, help="measured epochs per loader (median reported)")
    p.add_argument("--json", help="also write the results to this JSON file")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. loader.batch_size=64 loader.device=cuda")


def bench_load(args: argparse.Namespace) -> dict:
    """`python -m pipeline.bench load`: run the benchmark, print a summary on stderr, return the report."""
    flags = [f"{k}={v}" for k in ("shards", "out", "epochs") if (v := getattr(args, k)) is not None]
    cfg = load_config(BenchLoadConfig, args.config, flags + list(args.overrides))
    report = run(cfg)
    for name, r in report["results"].items():
        print(f"load: {name:10s} {r['median_samples_per_s']:10.1f} samples/s, {r['median_cpu_ms_per_sample']:7.2f} CPU "
              f"ms/sample, {r['median_s_to_first_batch']:.2f} s to the first batch (medians of {len(r['epoch_rates'])} "
              "epochs)", file=sys.stderr)
    if "dali_over_baseline" in report:
        print(f"load: DALI / per-file baseline {report['dali_over_baseline']:.2f}x", file=sys.stderr)
    return report
