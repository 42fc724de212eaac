"""Localization metrics on positive maps, from the per-sample counts of the sweep kernel.

Conventions (REFERENCE.md D.3, D.4, D.8; vssl_eval `Evaluator_iiou`, `eval_utils.compute_AUC`):
- IoU = |B & G| / (|G| + |B & ~G|); an empty GT with an empty prediction gives NaN.
- Success rate at t = fraction of samples with IoU >= t; NaN never succeeds (so it fails even at t = 0).
- AUC = trapezoid area (sklearn.metrics.auc) of the success rate over the floats 0.05 * k, k = 0..20.
- "cIoU" of the classic (median threshold) and adaptive flavours = success rate at 0.5, in %.
- "cIoU" at the universal threshold = mean IoU with NaN -> 0, in % (vssl_eval `CIoU_maxq3`), and its AUC also
  uses the NaN -> 0 list.
- iIoU / iAUC (IS3): samples grouped by image; an image succeeds at t when every one of its targets reaches t; the
  mean over images. vssl_eval propagates a NaN IoU into a NaN result; here a NaN target counts as a failure.
"""
from __future__ import annotations

import numpy as np

GRID21 = np.array([0.05 * k for k in range(21)])


def iou_from_counts(inter: np.ndarray, above: np.ndarray, gt_pixels: np.ndarray) -> np.ndarray:
    """IoU arrays from counts; gt_pixels broadcasts against above (e.g. [M, 1] against [M, T])."""
    inter = np.asarray(inter, dtype=np.float64)
    union = np.asarray(gt_pixels, dtype=np.float64) + np.asarray(above, dtype=np.float64) - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / np.where(union > 0, union, 1.0), np.nan)


def success_rate(ious: np.ndarray, t: float = 0.5, axis: int = 0) -> np.ndarray:
    """Fraction of samples (along axis) with IoU >= t; NaN counts as a failure."""
    ious = np.asarray(ious, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return np.sum(ious >= t, axis=axis) / ious.shape[axis]


def auc21(ious: np.ndarray, axis: int = 0) -> np.ndarray:
    """sklearn-style trapezoid AUC of the success rate over the 21-point grid (fractions, not %)."""
    rates = np.stack([success_rate(ious, t, axis=axis) for t in GRID21], axis=-1)
    return np.trapezoid(rates, GRID21, axis=-1)


def auc21_per_sample(ious: np.ndarray) -> np.ndarray:
    """Each sample's share of `auc21` (fractions): the trapezoid area of its own success indicator over the
    21-point grid, so that auc21 of a list is the mean of these (NaN fails everywhere)."""
    ious = np.asarray(ious, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        hits = np.stack([ious >= t for t in GRID21], axis=-1).astype(np.float64)
    return np.trapezoid(hits, GRID21, axis=-1)


def nan_to_zero(ious: np.ndarray) -> np.ndarray:
    return np.where(np.isnan(ious), 0.0, ious)


def summary(ious: np.ndarray, *, mean_is_ciou: bool) -> dict:
    """The usual numbers of one per-sample IoU list, in %.

    mean_is_ciou=False (classic, adaptive): cIoU = success rate at 0.5; the list keeps NaN.
    mean_is_ciou=True (universal / fixed thresholds): cIoU = mean IoU, NaN -> 0, and AUC of that list.
    """
    ious = np.asarray(ious, dtype=np.float64)
    if mean_is_ciou:
        clean = nan_to_zero(ious)
        return {"cIoU": 100 * float(clean.mean()), "AUC": 100 * float(auc21(clean)),
                "success50": 100 * float(success_rate(clean, 0.5)), "nan_samples": int(np.isnan(ious).sum())}
    return {"cIoU": 100 * float(success_rate(ious, 0.5)), "AUC": 100 * float(auc21(ious)),
            "mean_IoU": 100 * float(nan_to_zero(ious).mean()), "nan_samples": int(np.isnan(ious).sum())}


def is3_image_id(stem: str) -> str:
    """IS3 grouping key: the file stem without its last `_target` part (vssl_eval's `short_name`)."""
    name = stem.rsplit("/", 1)[-1].replace(".jpg", "")
    return "_".join(name.split("_")[:-1])


def instance_metrics(ious: np.ndarray, image_ids) -> dict:
    """iIoU (images whose every target has IoU >= 0.5) and iAUC over the 21-point grid, in %."""
    ious = np.asarray(ious, dtype=np.float64)
    _, group = np.unique(np.asarray(image_ids), return_inverse=True)
    n_groups = int(group.max()) + 1

    def rate(t: float) -> float:
        with np.errstate(invalid="ignore"):
            fail = ~(ious >= t)
        failed = np.zeros(n_groups, dtype=bool)
        np.logical_or.at(failed, group, fail)
        return 1.0 - float(failed.mean())

    rates = np.array([rate(t) for t in GRID21])
    return {"iIoU": 100 * rate(0.5), "iAUC": 100 * float(np.trapezoid(rates, GRID21)), "images": n_groups}
