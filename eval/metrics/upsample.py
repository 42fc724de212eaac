"""Bilinear upsampling of native-resolution similarity maps to the evaluation size, bit-exact with OpenCV.

`cv2.resize(m, (S, S), interpolation=cv2.INTER_LINEAR)` on a float32 map (the x86 wheels route it through Intel IPP)
uses half-pixel centres, src = (dst + 0.5) * (n_in / n_out) - 0.5 computed in float64, clamps at the borders, rounds
the fractional weight to float32 and evaluates each pass as `a + (b - a) * w` with `b - a` rounded to float32 and the
multiply-add rounded once (a fused multiply-add), along x first, then along y. This module reproduces exactly that
(checked pixel for pixel against cv2 in tests/test_metrics_upsample.py for every map of at least 2 x 2 pixels; a map
one pixel high or wide takes another OpenCV code path and may differ by 1 ulp).
"""
from __future__ import annotations

import numba as nb
import numpy as np


def axis_coeffs(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per output index: left source index, right source index and float32-rounded weight (as float64)."""
    d = np.arange(n_out, dtype=np.float64)
    fx = (d + 0.5) * (n_in / n_out) - 0.5
    left = np.floor(fx).astype(np.int64)
    w = fx - left
    low = left < 0
    w[low] = 0.0
    left[low] = 0
    high = left >= n_in - 1
    w[high] = 0.0
    left[high] = n_in - 1
    right = np.minimum(left + 1, n_in - 1)
    return left, right, w.astype(np.float32).astype(np.float64)


@nb.njit(cache=True, inline="always")
def lerp32(a: np.float32, b: np.float32, w: float) -> np.float32:
    """float32(a + float32(b - a) * w) with a single rounding of the multiply-add (exact in float64 here)."""
    diff = np.float32(b - a)
    return np.float32(np.float64(a) + np.float64(diff) * w)


@nb.njit(cache=True)
def upsample_into(src, y0, y1, wy, x0, x1, wx, tmp, out) -> None:
    """src [h, w] float32 -> out [H, W] float32, through tmp [h, W] (x pass, then y pass)."""
    h = src.shape[0]
    W = out.shape[1]
    for r in range(h):
        for c in range(W):
            tmp[r, c] = lerp32(src[r, x0[c]], src[r, x1[c]], wx[c])
    for r in range(out.shape[0]):
        a = y0[r]
        b = y1[r]
        wr = wy[r]
        for c in range(W):
            out[r, c] = lerp32(tmp[a, c], tmp[b, c], wr)


@nb.njit(cache=True, parallel=True)
def _upsample_many(maps, y0, y1, wy, x0, x1, wx, out) -> None:
    for i in nb.prange(maps.shape[0]):
        tmp = np.empty((maps.shape[1], out.shape[2]), dtype=np.float32)
        upsample_into(maps[i], y0, y1, wy, x0, x1, wx, tmp, out[i])


def upsample(maps: np.ndarray, size: int = 224) -> np.ndarray:
    """[..., h, w] float maps -> [..., size, size] float32, the same numbers as cv2.resize(INTER_LINEAR)."""
    arr = np.asarray(maps, dtype=np.float32)
    lead = arr.shape[:-2]
    h, w = arr.shape[-2:]
    flat = np.ascontiguousarray(arr.reshape(-1, h, w))
    out = np.empty((flat.shape[0], size, size), dtype=np.float32)
    y0, y1, wy = axis_coeffs(h, size)
    x0, x1, wx = axis_coeffs(w, size)
    _upsample_many(flat, y0, y1, wy, x0, x1, wx, out)
    return out.reshape(*lead, size, size)
