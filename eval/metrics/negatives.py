"""Metrics of negative audio (silence, noise, offscreen) and the ones mixing positives and negatives.

Conventions (REFERENCE.md D.5; vssl_eval `eval_utils.compute_pIA / compute_AUC_pIA / compute_f / compute_metrics`):
- pIA of one map = fraction of the S x S upsampled map strictly above the threshold; reported pIA = mean over maps, %.
- AUCN = trapezoid area over the floats 0.05 * k of the fraction of maps with pIA <= 0.05 k, % (higher is better).
- tau_U = the `quantile` (default 0.75: Q3, numpy's linear interpolation) of the per-map maxima of the negative maps at
  native resolution (raw values, no upsampling), pooling every map of every chosen kind (all seeds), computed on the
  calibration set (default: the scored set itself).
- FLOC = harmonic mean of cIoU at tau_U (mean IoU, %) and the mean over the negative kinds of (100 - pIA_kind);
  FAUC = harmonic mean of AUC at tau_U and the mean of the AUCN values; per-kind versions use one kind only.
  Everything is in % units, exactly as compute_metrics does.
- Sep = Q1(positive maxima) - Q3(pooled negative maxima), on the same native-resolution maxima.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

GRID21 = np.array([0.05 * k for k in range(21)])


def max_count_within(frac: float, pixels: int) -> int:
    """Largest count c with c / pixels <= frac, evaluated in the same float64 arithmetic as `pIA <= frac`."""
    c = int(np.floor(frac * pixels))
    while c >= 0 and not (c / pixels <= frac):
        c -= 1
    while (c + 1) / pixels <= frac:
        c += 1
    return c


def pia_limits(pixels: int) -> np.ndarray:
    """[21]: the largest above-count with pIA <= 0.05 k, for each point of GRID21."""
    return np.array([max_count_within(float(t), pixels) for t in GRID21])


def pia_cdf_counts(above: np.ndarray, pixels: int) -> np.ndarray:
    """[21, ...]: number of maps (axis 0 of above) with pIA <= 0.05 k, for each column of above."""
    above = np.asarray(above)
    return np.stack([(above <= lim).sum(axis=0) for lim in pia_limits(pixels)])


def per_map_pia_aucn(above: np.ndarray, pixels: int) -> np.ndarray:
    """[..., 2]: each map's pIA (fraction) and its share of AUCN, from above counts [...]: the share is the AUCN of
    the map alone (np.trapezoid over GRID21 of its indicator pIA <= 0.05 k, as aucn_from_cdf), so the mean over
    maps of these is pIA and AUCN."""
    above = np.asarray(above)
    below = (above[..., None] <= pia_limits(pixels)).astype(np.float64)
    return np.stack([above / pixels, np.trapezoid(below, GRID21, axis=-1)], axis=-1)


def aucn_from_cdf(cdf_counts: np.ndarray, n_maps: int) -> np.ndarray:
    """AUCN (fraction, not %) from pia_cdf_counts; works column-wise."""
    return np.trapezoid(np.asarray(cdf_counts, dtype=np.float64) / n_maps, GRID21, axis=0)


def quantile(values: np.ndarray, q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), 100.0 * q))


def universal_threshold(neg_maxima: Mapping[str, np.ndarray], kinds: Sequence[str], q: float = 0.75) -> dict:
    """tau_U pooled over `kinds`, plus the same quantile per kind (for reference)."""
    missing = [k for k in kinds if k not in neg_maxima]
    if missing:
        raise KeyError(f"negative kinds {missing} are not available (have {sorted(neg_maxima)})")
    pooled = np.concatenate([np.ravel(neg_maxima[k]) for k in kinds])
    return {"tau_U": quantile(pooled, q), "quantile": q, "kinds": list(kinds), "pooled_maps": int(pooled.size),
            "per_kind": {k: quantile(np.ravel(neg_maxima[k]), q) for k in kinds}}


def harmonic(a: float, b: float) -> float:
    """compute_f: 2ab / (a + b); NaN when both are 0 (as the public code gives)."""
    s = a + b
    return float(2 * a * b / s) if s != 0 else float("nan")


def global_scores(ciou_tau: float, auc_tau: float, pia: Mapping[str, float], aucn: Mapping[str, float]) -> dict:
    """FLOC and FAUC (all inputs and outputs in %), pooled over the given kinds and per kind."""
    kinds = list(pia)
    neg_pia = float(np.mean([100.0 - pia[k] for k in kinds]))
    neg_aucn = float(np.mean([aucn[k] for k in kinds]))
    return {
        "FLOC": harmonic(ciou_tau, neg_pia),
        "FAUC": harmonic(auc_tau, neg_aucn),
        "FLOC_per_kind": {k: harmonic(ciou_tau, 100.0 - pia[k]) for k in kinds},
        "FAUC_per_kind": {k: harmonic(auc_tau, aucn[k]) for k in kinds},
        "kinds": kinds,
    }


def separability(pos_maxima: np.ndarray, neg_maxima: Mapping[str, np.ndarray], kinds: Sequence[str]) -> dict:
    """Sep = Q1(pos maxima) - Q3(pooled neg maxima), with the per-kind values."""
    q1 = quantile(pos_maxima, 0.25)
    pooled = np.concatenate([np.ravel(neg_maxima[k]) for k in kinds])
    q3 = quantile(pooled, 0.75)
    return {"Sep": q1 - q3, "Q1_pos": q1, "Q3_neg": q3, "kinds": list(kinds),
            "per_kind": {k: q1 - quantile(np.ravel(neg_maxima[k]), 0.75) for k in kinds}}


def maxima_summary(maxima: np.ndarray) -> dict:
    m = np.ravel(np.asarray(maxima, dtype=np.float64))
    return {"mean": float(m.mean()), "median": float(np.median(m)), "q1": quantile(m, 0.25),
            "q3": quantile(m, 0.75), "min": float(m.min()), "max": float(m.max())}
