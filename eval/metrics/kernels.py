"""Numba threshold sweeps: every per-sample count the metrics need, for all thresholds, in one pass per map.

For each map the kernel upsamples the native map to S x S (cv2 arithmetic, `upsample.py`), puts every pixel into the
bucket of a sorted threshold grid (bucket j = number of thresholds strictly below the pixel, found exactly through a
uniform lookup table and two branch-free comparisons), and turns the bucket histogram into counts by a suffix sum:

    above[k] = #{p : x_p > t_k}          inter[k] = #{p : x_p > t_k and G_p}

Pixels are compared in float64 with strict `>` (REFERENCE.md D.8). The same pass gives the per-sample thresholds of the
classic metric (median: sorted(x)[HW // 2]) and of the adaptive one (sorted(x)[HW - g], g = #GT pixels or HW // 2
when the GT is empty), found from the histogram plus a sort of the one bucket holding that rank, and their counts.
Optionally it also evaluates SSL-TIE's own classic flavour (1 - minmax(-x) in float32, `> median`, ties at the
maximum kept). Non-finite values in a map set `bad[i]`; callers turn that into an error.
"""
from __future__ import annotations

from dataclasses import dataclass

import numba as nb
import numpy as np

from eval.metrics.upsample import axis_coeffs, lerp32


class ThresholdGrid:
    """A strictly increasing float64 threshold array with its bucket lookup table.

    The range [t_0, t_last] is cut into uniform cells. For cell c, `base[c]` is the number of thresholds below the
    cell (less a margin far above the float64 rounding of the cell index) and `cand1[c]`, `cand2[c]` are the first
    two thresholds inside the widened cell (+inf when absent), so the bucket of a pixel x is
    base + (cand1 < x) + (cand2 < x): arithmetic and two branch-free comparisons. A cell holding more than two
    thresholds (near-duplicates) is `crowded`; the kernel recounts the few pixels that fall into one exactly.
    """

    def __init__(self, thresholds: np.ndarray, cells_per_threshold: int = 2) -> None:
        thr = np.asarray(thresholds, dtype=np.float64)
        if thr.ndim != 1 or thr.size == 0 or not np.all(np.isfinite(thr)) or np.any(np.diff(thr) <= 0):
            raise ValueError("thresholds must be a non-empty, finite, strictly increasing 1-D array")
        self.values = thr
        self.lo = float(thr[0])
        span = float(thr[-1] - thr[0])
        self.cells = max(1, cells_per_threshold * thr.size)
        self.inv_width = self.cells / span if span > 0 else 1.0
        edges = self.lo + np.arange(self.cells + 1, dtype=np.float64) / self.inv_width
        margin = 1e-9 * max(1.0, abs(self.lo), abs(float(thr[-1])))
        first = np.searchsorted(thr, edges[:-1] - margin, side="left")
        count = np.searchsorted(thr, edges[1:] + margin, side="right") - first
        self.base = first.astype(np.int64)
        cands = []
        for k in range(2):
            cand = np.full(self.cells, np.inf)
            cand[count > k] = thr[first[count > k] + k]
            cands.append(cand)
        self.cand1, self.cand2 = cands
        self.crowded = (count > 2).astype(np.uint8)


@nb.njit(cache=True, inline="always")
def _cell(v, lo, inv_width, cells):
    f = min(max((v - lo) * inv_width, 0.0), cells - 1.0)
    return np.int64(f)


@nb.njit(cache=True)
def _rank_counts(flat, thr, gflat, hist, above, inter, rank):
    """The rank-th smallest value t (0-based) of flat and the counts #(x > t), #(x > t and G).

    Only the bucket holding that rank (thr[b-1] < x <= thr[b]) is gathered and sorted; the other buckets are counted
    by the histogram."""
    n_thr = thr.shape[0]
    acc = 0
    b = 0
    while acc + hist[b] <= rank:
        acc += hist[b]
        b += 1
    low = thr[b - 1] if b > 0 else -np.inf
    high = thr[b] if b < n_thr else np.inf
    vals = np.empty(hist[b], dtype=np.float64)
    flags = np.empty(hist[b], dtype=np.uint8)
    m = 0
    for p in range(flat.shape[0]):
        v = flat[p]
        if low < v and v <= high:
            vals[m] = v
            flags[m] = gflat[p]
            m += 1
    t = np.sort(vals)[rank - acc]
    a = above[b] if b < n_thr else 0       # pixels in buckets above b
    n_in = inter[b] if b < n_thr else 0
    for q in range(m):
        if vals[q] > t:
            a += 1
            if flags[q] != 0:
                n_in += 1
    return t, a, n_in


@nb.njit(cache=True, inline="always")
def _ssltie_pred(x, neg_min, rng_):
    """SSL-TIE's 1 - minmax(-x) in float32 (no scaling when the map is constant)."""
    nv = -x
    scaled = np.float32(np.float32(nv - neg_min) / rng_) if rng_ != 0 else nv
    return np.float32(np.float32(1.0) - scaled)


@nb.njit(cache=True, parallel=True)
def _sweep(maps, gt, has_gt, ranks, ssltie, extra, thr, lo, inv_width, base, cand1, cand2, crowded, cells,
           y0, y1, wy, x0, x1, wx, size,
           above, inter, gcount, rank_thr, rank_above, rank_inter, extra_above, max_native, bad):
    n_thr = thr.shape[0]
    hw = size * size
    for i in nb.prange(maps.shape[0]):
        src = maps[i]
        ok = True
        mx = -np.inf
        for r in range(src.shape[0]):
            for c in range(src.shape[1]):
                v = src[r, c]
                if not np.isfinite(v):
                    ok = False
                elif v > mx:
                    mx = v
        max_native[i] = mx
        if not ok:
            bad[i] = True
            continue
        # x pass of the upsampling into tmp; the y pass runs row by row with the bucketing below
        tmp = np.empty((src.shape[0], size), dtype=np.float32)
        for r in range(src.shape[0]):
            for c in range(size):
                tmp[r, c] = lerp32(src[r, x0[c]], src[r, x1[c]], wx[c])
        flat = np.empty(hw, dtype=np.float64)
        cell_row = np.empty(size, dtype=np.int64)
        hist = np.zeros(n_thr + 1, dtype=np.int64)
        ghist = np.zeros(n_thr + 1, dtype=np.int64)
        if has_gt:
            gflat = gt[i].reshape(hw)
        else:
            gflat = gt[0].reshape(gt.shape[1] * gt.shape[2])   # all zeros, S x S
        g = 0
        n_crowded = 0
        up_min = np.float32(np.inf)
        up_max = np.float32(-np.inf)
        top_cell = cells - 1.0
        for r in range(size):
            a_row = y0[r]
            b_row = y1[r]
            w_row = wy[r]
            off = r * size
            # row pass 1 (vectorisable): y pass of the upsampling, range, lookup cell
            for c in range(size):
                v32 = lerp32(tmp[a_row, c], tmp[b_row, c], w_row)
                up_min = min(up_min, v32)
                up_max = max(up_max, v32)
                v = np.float64(v32)
                flat[off + c] = v
                f = (v - lo) * inv_width
                f = f if f > 0.0 else 0.0
                f = f if f < top_cell else top_cell
                cell_row[c] = np.int64(f)
            # row pass 2: bucket of each pixel; neighbouring pixels often share a bucket, so the histograms are
            # updated once per run of equal buckets instead of once per pixel
            prev = -1
            run = 0
            grun = 0
            for c in range(size):
                v = flat[off + c]
                cell = cell_row[c]
                j = base[cell] + np.int64(cand1[cell] < v) + np.int64(cand2[cell] < v)
                n_crowded += np.int64(crowded[cell])
                if j != prev:
                    if prev >= 0:
                        hist[prev] += run
                        ghist[prev] += grun
                    prev = j
                    run = 0
                    grun = 0
                run += 1
                grun += np.int64(gflat[off + c] != 0)
            hist[prev] += run
            ghist[prev] += grun
        for k in range(n_thr + 1):
            g += ghist[k]
        if n_crowded > 0:
            # pixels in a cell with more than two thresholds: recount them exactly
            for p in range(hw):
                v = flat[p]
                cell = _cell(v, lo, inv_width, cells)
                if crowded[cell]:
                    fast = base[cell] + np.int64(cand1[cell] < v) + np.int64(cand2[cell] < v)
                    j = np.searchsorted(thr, v, side="left")
                    if j != fast:
                        hist[fast] -= 1
                        hist[j] += 1
                        if gflat[p] != 0:
                            ghist[fast] -= 1
                            ghist[j] += 1
        gcount[i] = g
        run = 0
        grun = 0
        for k in range(n_thr - 1, -1, -1):
            run += hist[k + 1]
            grun += ghist[k + 1]
            above[i, k] = run
            if has_gt:
                inter[i, k] = grun
        for e in range(extra.shape[1]):
            t = extra[i, e]
            cnt = 0
            for p in range(hw):
                cnt += np.int64(flat[p] > t)
            extra_above[i, e] = cnt
        if not ranks:
            continue
        g_adap = g if g > 0 else hw // 2
        t, a, n_in = _rank_counts(flat, thr, gflat, hist, above[i], inter[i], hw // 2)
        rank_thr[i, 0], rank_above[i, 0], rank_inter[i, 0] = t, a, n_in
        t, a, n_in = _rank_counts(flat, thr, gflat, hist, above[i], inter[i], hw - g_adap)
        rank_thr[i, 1], rank_above[i, 1], rank_inter[i, 1] = t, a, n_in
        if ssltie:
            # SSL-TIE: pred = 1 - minmax(-x); binary = pred > sorted(pred)[HW // 2] or pred >= 1. pred is a
            # non-decreasing function of x, so its median is pred(median of x).
            neg_min = -up_max
            rng_ = np.float32(-up_min - neg_min)
            med = _ssltie_pred(np.float32(rank_thr[i, 0]), neg_min, rng_)
            a = 0
            n_in = 0
            for p in range(hw):     # branch-free, so the compiler can vectorise the division
                pv = _ssltie_pred(np.float32(flat[p]), neg_min, rng_)
                hit = np.int64((pv > med) | (pv >= np.float32(1.0)))
                a += hit
                n_in += hit * np.int64(gflat[p] != 0)
            rank_above[i, 2] = a
            rank_inter[i, 2] = n_in


@dataclass
class SweepResult:
    """Counts for M maps over T thresholds (see the module docstring); rank columns: 0 median, 1 adaptive,
    2 SSL-TIE classic (above/inter only)."""

    above: np.ndarray        # int32 [M, T]
    inter: np.ndarray        # int32 [M, T] ([M, 0] without GT)
    gt_pixels: np.ndarray    # int64 [M]
    rank_thr: np.ndarray     # float64 [M, 2]: median and adaptive thresholds
    rank_above: np.ndarray   # int64 [M, 3]
    rank_inter: np.ndarray   # int64 [M, 3]
    extra_above: np.ndarray  # int64 [M, E]: pixels above per-map extra thresholds
    max_native: np.ndarray   # float64 [M]: maximum of the native-resolution map
    bad: np.ndarray          # bool [M]: the map holds NaN or inf


def sweep(maps: np.ndarray, grid: ThresholdGrid, gt: np.ndarray | None = None, *, size: int = 224,
          extra: np.ndarray | None = None, ssltie: bool = False) -> SweepResult:
    """Run the kernel on maps [M, h, w]; gt [M, size, size] (nonzero = object) enables IoU counts and ranks."""
    maps = np.ascontiguousarray(maps, dtype=np.float32)
    m, h, w = maps.shape
    has_gt = gt is not None
    if has_gt:
        gt_arr = np.ascontiguousarray(gt)
        if gt_arr.dtype == np.bool_:
            gt_arr = gt_arr.view(np.uint8)
        elif gt_arr.dtype != np.uint8:
            gt_arr = (gt_arr != 0).view(np.uint8)
    else:
        gt_arr = np.zeros((1, size, size), dtype=np.uint8)
    ex = np.zeros((m, 0), dtype=np.float64) if extra is None else np.ascontiguousarray(extra, dtype=np.float64)
    n_thr = grid.values.size
    inter = np.zeros((m if has_gt else 1, n_thr), dtype=np.int32)
    out = SweepResult(
        above=np.zeros((m, n_thr), dtype=np.int32),
        inter=inter if has_gt else np.zeros((m, 0), dtype=np.int32),
        gt_pixels=np.zeros(m, dtype=np.int64),
        rank_thr=np.full((m, 2), np.nan),
        rank_above=np.zeros((m, 3), dtype=np.int64),
        rank_inter=np.zeros((m, 3), dtype=np.int64),
        extra_above=np.zeros((m, ex.shape[1]), dtype=np.int64),
        max_native=np.zeros(m, dtype=np.float64),
        bad=np.zeros(m, dtype=np.bool_),
    )
    y0, y1, wy = axis_coeffs(h, size)
    x0, x1, wx = axis_coeffs(w, size)
    _sweep(maps, gt_arr, has_gt, has_gt, ssltie and has_gt, ex, grid.values, grid.lo, grid.inv_width, grid.base,
           grid.cand1, grid.cand2, grid.crowded, grid.cells, y0, y1, wy, x0, x1, wx, size,
           out.above, inter, out.gt_pixels, out.rank_thr, out.rank_above, out.rank_inter, out.extra_above,
           out.max_native, out.bad)
    return out
