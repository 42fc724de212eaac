"""`python -m eval.bench`: time the Numba threshold sweep against the plain-numpy reference on the same machine;
`python -m eval.bench --bootstrap`: time the bootstrap intervals the same way.

Workload (defaults): 5,158 random 14 x 14 maps (the size of VGG-SS) with random box ground truth, upsampled to
224 x 224 and swept over 1,001 thresholds: per-sample IoU and pIA counts at every threshold plus the classic
(median), adaptive and SSL-TIE-classic thresholds, exactly the kernel call `compute_all` makes for positive maps.
The Numba time is the median wall time of `--repeats` runs after one warm-up (compilation) run; the process CPU time
and the load average are printed beside it, since other jobs on the machine inflate the wall time. The numpy reference
(`eval.metrics.reference.sweep_ref`, the one the tests use: one threshold at a time) is timed on `--ref-maps` maps
only and extrapolated linearly to all maps (median time per map x maps); `--ref-maps` equal to `--maps` times it in
full. Both give the same counts on the reference subset, which the benchmark checks.

`--bootstrap`: per-sample values of a VGG-SS-sized test set (5,158 samples, silence, 10 noise and 10 offscreen draws
per sample, every column of Tables 1-4, the resamples' tau_U band) and `--resamples` (10,000) resamples of every
metric through the Numba kernels (`eval.metrics.bootstrap.distribution`), median of `--repeats` runs after a warm-up;
the numpy loop over explicit index lists (`reference_distribution`) on the first `--ref-resamples` resamples,
extrapolated, and the two compared on those.
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import time

import numba
import numpy as np

from eval.errors import EvalError
from eval.metrics import bootstrap as bs
from eval.metrics.kernels import ThresholdGrid, sweep
from eval.metrics.reference import sweep_ref
from pipeline.common.atomic import atomic_write_text
from pipeline.common.cli import Parser, run_cli


def make_workload(n: int, native: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    maps = (0.2 + 0.2 * rng.standard_normal((n, native, native))).astype(np.float32)
    gt = np.zeros((n, size, size), dtype=np.uint8)
    corners = rng.integers(0, size // 2, size=(n, 2))
    extent = rng.integers(size // 8, size // 2, size=(n, 2))
    for i in range(n):
        (x0, y0), (w, h) = corners[i], extent[i]
        gt[i, y0:y0 + h, x0:x0 + w] = 1
    return maps, gt


def bootstrap_workload(n: int, draws: int, resamples: int, seed: int):
    """(Resampling, SampleValues) of a test set of `n` single-sample groups with silence and `draws` noise and
    offscreen maps per sample: the columns `compute_all` resamples, at ~258 thresholds of a tau_U band."""
    rng = np.random.default_rng(seed)
    pos_max = rng.normal(0.6, 0.1, n)
    neg = {"silence": rng.normal(0.3, 0.1, (n, 1)), "noise": rng.normal(0.35, 0.1, (n, draws)),
           "offscreen": rng.normal(0.5, 0.1, (n, draws))}
    kinds = list(neg)
    res = bs.Resampling(np.arange(n), resamples, seed)
    quantiles = bs.tau_distribution(res, pos_max, neg, kinds, kinds, 0.75)
    thr = np.unique(np.concatenate([np.linspace(-1, 1, 1001), bs.tau_band(quantiles[0])]))
    ks = np.unique(bs.nearest(thr, quantiles[0]))
    linear = {c: rng.random(n) * 100 for c in ["cIoU_Adap", "AUC_Adap", "Alignment", "magnitude_pair_l2"]
              + [f"{d}_{m}@{k}" for d in ("I2A", "A2I") for m in "PA" for k in (1, 5, 10)]}
    at_tau = {c: rng.random((n, ks.size)) * 100 for c in ["cIoU_Uth", "AUC_Uth", "pIA_S", "AUCN_S", "pIA_N",
                                                          "AUCN_N", "pIA_O", "AUCN_O"]}
    vals = bs.SampleValues(pos_max=pos_max, neg_max=neg, tau_kinds=kinds, sep_kinds=kinds, tau_quantile=0.75,
                           linear=linear, at_tau=at_tau, ks=ks, thresholds=thr, fixed_tau=None)
    return res, vals


def bench_bootstrap(args) -> int:
    res, vals = bootstrap_workload(args.maps, args.draws, args.resamples, args.seed)
    warmup, times, cpu, fast = _timed(lambda: bs.distribution(bs.Resampling(res.groups, 2, args.seed), vals),
                                      lambda: bs.distribution(res, vals), args.repeats)
    t0 = time.perf_counter()
    ref = bs.reference_distribution(bs.Resampling(res.groups, args.ref_resamples, args.seed), vals)
    ref_s = (time.perf_counter() - t0) / args.ref_resamples * args.resamples
    worst = max(float(np.max(np.abs(fast[c][:args.ref_resamples] - ref[c]))) for c in ref)
    fast_s = statistics.median(times)
    numbers = {"samples": args.maps, "draws": args.draws, "resamples": args.resamples,
               "columns": len(vals.linear) + len(vals.at_tau) + 3, "tau_band_thresholds": int(vals.ks.size),
               "numba_threads": numba.get_num_threads(), "cpus": os.cpu_count(), "numba_compile_s": warmup,
               "numba_runs_s": times, "numba_median_s": fast_s, "numba_cpu_median_s": statistics.median(cpu),
               "load_average_1min": os.getloadavg()[0], "numpy_ref_resamples": args.ref_resamples,
               "numpy_estimated_s": ref_s, "speedup": ref_s / fast_s, "max_abs_difference": worst,
               "goal_met": bool(args.resamples >= 10000 and args.maps >= 5158 and fast_s < 10.0 and worst < 1e-9)}
    print(f"workload: {args.maps} samples, silence + {args.draws} noise + {args.draws} offscreen draws each, "
          f"{numbers['columns']} columns, {args.resamples} resamples; numba threads {numbers['numba_threads']}")
    print(f"numba      : median {fast_s:.2f} s over {args.repeats} runs {[round(t, 2) for t in times]} (compile/load "
          f"{warmup:.1f} s, not counted); process CPU {numbers['numba_cpu_median_s']:.2f} s; load "
          f"{numbers['load_average_1min']:.1f}")
    print(f"numpy loop : {ref_s:.1f} s, extrapolated from {args.ref_resamples} resamples")
    print(f"speedup    : {numbers['speedup']:.0f}x; largest difference on the reference resamples {worst:.1e}")
    print(f"goal (10,000 resamples of a 5,158-sample set < 10 s, equal to the reference): "
          f"{'met' if numbers['goal_met'] else 'NOT met'}")
    return _write(numbers, args.out)


def _timed(warm, run, repeats: int) -> tuple[float, list[float], list[float], object]:
    """(warm-up seconds, wall and CPU seconds of each of `repeats` runs, the last run's result)."""
    t0 = time.perf_counter()
    warm()
    warmup = time.perf_counter() - t0
    times, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        result = run()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return warmup, times, cpu, result


def _write(numbers: dict, out: str | None) -> int:
    if out:
        atomic_write_text(out, json.dumps(numbers, indent=1) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = Parser(prog="python -m eval.bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--bootstrap", action="store_true", help="time the bootstrap intervals instead of the sweep")
    ap.add_argument("--resamples", type=int, default=10000)
    ap.add_argument("--ref-resamples", type=int, default=40, help="resamples the numpy loop is timed on")
    ap.add_argument("--draws", type=int, default=10, help="noise and offscreen draws per sample (--bootstrap)")
    ap.add_argument("--maps", type=int, default=5158)
    ap.add_argument("--thresholds", type=int, default=1001)
    ap.add_argument("--native", type=int, default=14, help="native map size h = w")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--ref-maps", type=int, default=20, help="maps the numpy reference is timed on")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", help="also write the numbers as JSON to this file")
    args = ap.parse_args(argv)
    if min(args.maps, args.thresholds, args.native, args.size, args.ref_maps, args.repeats) < 1:
        raise EvalError("bench: every count must be positive")
    ref_maps = min(args.ref_maps, args.maps)
    if args.bootstrap:
        if min(args.resamples, args.ref_resamples, args.draws) < 1:
            raise EvalError("bench: every count must be positive")
        return bench_bootstrap(args)

    maps, gt = make_workload(args.maps, args.native, args.size, args.seed)
    thr = np.linspace(-1.0, 1.0, args.thresholds)
    grid = ThresholdGrid(thr)

    warmup, numba_times, numba_cpu, res = _timed(lambda: sweep(maps[:2], grid, gt[:2], size=args.size, ssltie=True),
                                                 lambda: sweep(maps, grid, gt, size=args.size, ssltie=True),
                                                 args.repeats)
    numba_s = statistics.median(numba_times)

    per_map = []
    ref_above, ref_inter = [], []
    for i in range(ref_maps):
        t0 = time.perf_counter()
        a, b = sweep_ref(maps[i:i + 1], gt[i:i + 1], thr, size=args.size)
        per_map.append(time.perf_counter() - t0)
        ref_above.append(a)
        ref_inter.append(b)
    same = bool(np.array_equal(np.concatenate(ref_above), res.above[:ref_maps])
                and np.array_equal(np.concatenate(ref_inter), res.inter[:ref_maps]))
    numpy_s = statistics.median(per_map) * args.maps
    speedup = numpy_s / numba_s
    numbers = {
        "maps": args.maps, "native": args.native, "size": args.size, "thresholds": args.thresholds,
        "numba_threads": numba.get_num_threads(), "cpus": os.cpu_count(), "machine": platform.processor() or
        platform.machine(), "numba_compile_s": warmup, "numba_runs_s": numba_times, "numba_median_s": numba_s,
        "numba_cpu_median_s": statistics.median(numba_cpu), "load_average_1min": os.getloadavg()[0],
        "numpy_ref_maps": ref_maps, "numpy_median_per_map_s": statistics.median(per_map),
        "numpy_estimated_s": numpy_s, "numpy_extrapolated": ref_maps < args.maps, "speedup": speedup,
        "counts_equal_on_ref_maps": same, "goal_met": bool(speedup >= 100 and numba_s < 3.0 and same),
    }
    how = (f"extrapolated from {ref_maps} maps (median {numbers['numpy_median_per_map_s'] * 1e3:.1f} ms/map x "
           f"{args.maps})" if ref_maps < args.maps else "measured on all maps")
    print(f"workload: {args.maps} maps {args.native}x{args.native} -> {args.size}x{args.size}, "
          f"{args.thresholds} thresholds, GT boxes; numba threads {numbers['numba_threads']}, cpus {os.cpu_count()}")
    print(f"numba sweep : median {numba_s:.3f} s over {args.repeats} runs {[round(t, 3) for t in numba_times]} "
          f"(first-call compile/load {warmup:.1f} s, not counted); process CPU time "
          f"{numbers['numba_cpu_median_s']:.3f} s over all threads; 1-min load average "
          f"{numbers['load_average_1min']:.1f}")
    print(f"numpy ref   : {numpy_s:.1f} s, {how}")
    print(f"speedup     : {speedup:.0f}x; counts identical on the reference maps: {same}")
    print(f"goal (>= 100x and < 3 s): {'met' if numbers['goal_met'] else 'NOT met'}")
    return _write(numbers, args.out)


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
