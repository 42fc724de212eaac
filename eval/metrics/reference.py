"""Plain-numpy reference implementation of every metric: the obvious loops, one sample and one threshold at a time.

It follows the public evaluation code (xavijuanola/vssl_eval `Evaluator_iiou`, `eval_utils`; SSL-TIE `main.test`)
statement by statement in meaning, without sharing any code with the Numba path, so the tests can check the fast
path against it and `python -m eval.bench` can time it. It is slow on purpose: never use it for real evaluations.
"""
from __future__ import annotations

import numpy as np

GRID21 = [0.05 * k for k in range(21)]   # the floats the public code uses (0.05 * 3 > 0.15)


def upsample_ref(m: np.ndarray, size: int = 224) -> np.ndarray:
    """cv2.resize(m, (size, size), INTER_LINEAR) for a float32 map, written out as two separable passes."""
    m = np.asarray(m, dtype=np.float32)

    def coeffs(n_in: int):
        fx = (np.arange(size) + 0.5) * (n_in / size) - 0.5
        left = np.floor(fx).astype(int)
        w = fx - left
        w = np.where(left < 0, 0.0, w)
        left = np.where(left < 0, 0, left)
        w = np.where(left >= n_in - 1, 0.0, w)
        left = np.where(left >= n_in - 1, n_in - 1, left)
        return left, np.minimum(left + 1, n_in - 1), w.astype(np.float32).astype(np.float64)

    def lerp(a: np.ndarray, b: np.ndarray, w: np.ndarray) -> np.ndarray:
        return (a.astype(np.float64) + (b - a).astype(np.float64) * w).astype(np.float32)

    y0, y1, wy = coeffs(m.shape[0])
    x0, x1, wx = coeffs(m.shape[1])
    t = lerp(m[:, x0], m[:, x1], wx[None, :])
    return lerp(t[y0], t[y1], wy[:, None])


def iou_ref(pred: np.ndarray, gt: np.ndarray, thr: float) -> float:
    """IoU of (pred > thr) with the binary GT, compared in float64; 0/0 gives NaN (as cal_CIOU does)."""
    b = (pred.astype(np.float64) > np.float64(thr)).astype(np.float64)
    g = (gt != 0).astype(np.float64)
    inter = np.sum(b * g)
    union = np.sum(g) + np.sum(b * (g == 0))
    return float(inter / union) if union > 0 else float("nan")


def median_threshold_ref(pred: np.ndarray) -> float:
    return float(np.sort(pred.flatten())[int(pred.shape[0] * pred.shape[1] / 2)])


def adaptive_threshold_ref(pred: np.ndarray, gt: np.ndarray) -> float:
    g = int((gt != 0).sum())
    if g == 0:
        g = int(pred.shape[0] * pred.shape[1]) // 2
    return float(np.sort(pred.flatten())[int(pred.shape[0] * pred.shape[1]) - g])


def ssltie_iou_ref(pred: np.ndarray, gt: np.ndarray) -> float:
    """SSL-TIE main.test: p = 1 - minmax(-pred); p[p > median] = 1; p[p < 1] = 0; IoU of p >= 0.5."""
    neg = -pred.astype(np.float32)
    vmin, vmax = neg.min(), neg.max()
    if not (vmax - vmin) == 0:
        neg = (neg - vmin) / (vmax - vmin)
    p = 1 - neg
    thr = np.sort(p.flatten())[int(p.shape[0] * p.shape[1] / 2)]
    p[p > thr] = 1
    p[p < 1] = 0
    b = (p >= 0.5).astype(np.float64)
    g = (gt != 0).astype(np.float64)
    union = np.sum(g) + np.sum(b * (g == 0))
    return float(np.sum(b * g) / union) if union > 0 else float("nan")


def pia_ref(pred: np.ndarray, thr: float) -> float:
    """Fraction of the image above thr (float64 comparison)."""
    b = pred.astype(np.float64) > np.float64(thr)
    return float(b.sum() / b.size)


def sweep_ref(maps: np.ndarray, gt: np.ndarray | None, thresholds: np.ndarray, size: int = 224):
    """For each map and each threshold, one at a time: pixels above and (with GT) pixels above inside the GT."""
    above = np.zeros((len(maps), len(thresholds)), dtype=np.int64)
    inter = np.zeros_like(above)
    for i, m in enumerate(maps):
        up = upsample_ref(m, size).astype(np.float64)
        g = None if gt is None else gt[i] != 0
        for k, t in enumerate(thresholds):
            b = up > t
            above[i, k] = b.sum()
            if g is not None:
                inter[i, k] = (b & g).sum()
    return above, inter


def success_ref(ious, t: float = 0.5) -> float:
    """Fraction of samples with IoU >= t (NaN never succeeds)."""
    hits = 0
    for v in ious:
        if v >= t:
            hits += 1
    return hits / len(ious)


def trapezoid_ref(x, y) -> float:
    area = 0.0
    for k in range(1, len(x)):
        area += (x[k] - x[k - 1]) * (y[k] + y[k - 1]) / 2.0
    return area


def auc_ref(ious) -> float:
    """sklearn.metrics.auc over the 21-point grid of the success rate (IoU >= 0.05 k)."""
    return trapezoid_ref(GRID21, [success_ref(ious, t) for t in GRID21])


def aucn_ref(pias) -> float:
    """Area under the CDF of pIA (pIA <= 0.05 k), as compute_AUC_pIA."""
    ys = []
    for t in GRID21:
        ys.append(sum(1 for v in pias if v <= t) / len(pias))
    return trapezoid_ref(GRID21, ys)


def mean_nan0_ref(ious) -> float:
    return float(np.mean([0.0 if np.isnan(v) else v for v in ious]))


def harmonic_ref(a: float, b: float) -> float:
    return 2 * (a * b) / (a + b)


def iiou_ref(ious, image_ids, t: float) -> float:
    """Mean over images of 'every target of the image reaches IoU >= t' (NaN counts as a failure)."""
    groups: dict = {}
    for v, name in zip(ious, image_ids):
        groups.setdefault(name, []).append(v)
    return float(np.mean([min(1.0 if v >= t else 0.0 for v in vals) for vals in groups.values()]))


def iauc_ref(ious, image_ids) -> float:
    return trapezoid_ref(GRID21, [iiou_ref(ious, image_ids, t) for t in GRID21])


def retrieval_ref(scores: np.ndarray, q_labels, c_labels, k: int) -> tuple[float, float]:
    """(P@k, A@k) for each row of scores as a query over the columns (ties: lower column index first)."""
    precision, accuracy = [], []
    for i in range(scores.shape[0]):
        order = sorted(range(scores.shape[1]), key=lambda j: (-scores[i, j], j))[:k]
        same = [c_labels[j] == q_labels[i] for j in order]
        precision.append(sum(same) / k)
        accuracy.append(1.0 if any(same) else 0.0)
    return float(np.mean(precision)), float(np.mean(accuracy))
