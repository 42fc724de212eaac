"""Bootstrap intervals of the Tables 1-4 metrics over test samples (docs/METRICS.md, "Intervals").

The unit resampled is the group of samples that share a picture (VGG-SS: a clip; IS3 / IS3+: an image with its two
targets; S4: a video with its five frames; `image_ids` of `compute_all`). Resample b draws G groups with replacement
(numpy's Generator, seeded by (seed, block) for each block of `BLOCK` resamples, so any resample is reproducible);
each sample then weighs as many times as its group was drawn, exactly as if the drawn groups' samples were listed
again. Every metric is recomputed on the resample from per-sample values the sweeps produced once (`SampleValues`):
- means over samples (`linear` columns): cIoU / AUC Adap., alignment, pair-L2 magnitude, retrieval P@K / A@K (per
  query, against the whole test set as the gallery);
- quantiles, with numpy's linear interpolation on the resample's list: tau_U (Q3 of the pooled negative maxima, unless
  tau is fixed or comes from a calibration set), and Sep = Q1(positive maxima) - Q3(pooled negative maxima);
- means at the resample's own tau_U (`at_tau` columns): cIoU / AUC Uth, pIA and AUCN per negative kind. tau_U of a
  resample is rounded to the nearest threshold of the sweep grid, which `tau_band` refines with `BAND` thresholds
  spread over the range the resamples' tau_U take;
- FLOC and FAUC from the resample's own values, the modality-gap magnitude from weighted mean embeddings.
The interval is the percentile interval of the resamples' values ((1 - confidence) / 2 either side); resamples where a
metric is undefined (NaN) are left out of its interval and counted.

`resample_quantiles` and `weighted_means` are the Numba kernels; `reference_distribution` is the plain numpy loop
over explicit index lists they are checked against (tests, `python -m eval.bench --bootstrap`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numba as nb
import numpy as np

BLOCK = 256      # resamples drawn per generator
BAND = 257       # extra thresholds over the range of the resamples' tau_U


@dataclass
class Resampling:
    groups: np.ndarray       # [N] group index of each sample, 0..G-1
    resamples: int
    seed: int = 0

    def __post_init__(self) -> None:
        self.groups = np.asarray(self.groups, dtype=np.int64)
        self.num_groups = int(self.groups.max()) + 1 if self.groups.size else 0
        order = np.argsort(self.groups, kind="stable")
        self.members = order.astype(np.int64)                                   # samples of group g:
        self.offsets = np.searchsorted(self.groups[order], np.arange(self.num_groups + 1))  # members[off[g]:off[g+1]]

    def blocks(self):
        """(first resample, draws [b, G] of group indices) for each block of resamples."""
        for k, start in enumerate(range(0, self.resamples, BLOCK)):
            rng = np.random.default_rng([self.seed, k])
            b = min(BLOCK, self.resamples - start)
            yield start, rng.integers(0, self.num_groups, size=(b, self.num_groups), dtype=np.int64)


def group_ids(image_ids, n: int) -> np.ndarray:
    """Group index per sample: the distinct image ids in order of appearance (each sample alone without ids)."""
    if image_ids is None:
        return np.arange(n)
    _, first, inverse = np.unique(np.asarray(image_ids), return_index=True, return_inverse=True)
    rank = np.empty(first.size, np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(first.size)
    return rank[inverse]


# ---------------------------------------------------------------------------------------------------- kernels
@nb.njit(cache=True)
def _counts(draw, num_groups):
    c = np.zeros(num_groups, np.int64)
    for g in draw:
        c[g] += 1
    return c


@nb.njit(cache=True)
def _wquantile(values, owners, weight, q):
    """numpy.percentile(linear) of the list where values[j] (sorted ascending) appears weight[owners[j]] times."""
    total = 0
    for j in range(values.size):
        total += weight[owners[j]]
    h = (total - 1) * q
    lo = np.floor(h)
    t = h - lo
    lo_i = np.int64(lo)
    hi_i = min(lo_i + 1, total - 1)
    a = np.nan
    b = np.nan
    cum = 0
    for j in range(values.size):
        w = weight[owners[j]]
        if w == 0:
            continue
        cum += w
        if np.isnan(a) and cum > lo_i:
            a = values[j]
        if cum > hi_i:
            b = values[j]
            break
    diff = b - a
    if t >= 0.5:                     # numpy's _lerp: b - diff * (1 - t) for t >= 0.5, else a + diff * t
        return b - diff * (1.0 - t)
    return a + diff * t


@nb.njit(parallel=True, cache=True)
def resample_quantiles(draws, groups, pos_sorted, pos_owner, neg_sorted, neg_owner, q_pos, q_neg):
    """[b, 2]: per resample, the q_pos quantile of the positive maxima and the q_neg quantile of the pooled negative
    maxima (both lists sorted ascending, with the sample owning each value)."""
    b_count, num_groups = draws.shape
    out = np.empty((b_count, 2))
    for b in nb.prange(b_count):
        counts = _counts(draws[b], num_groups)
        weight = counts[groups]
        out[b, 0] = _wquantile(pos_sorted, pos_owner, weight, q_pos)
        out[b, 1] = _wquantile(neg_sorted, neg_owner, weight, q_neg) if neg_sorted.size else np.nan
    return out


@nb.njit(parallel=True, cache=True)
def weighted_means(draws, members, offsets, linear, at_tau, k_of):
    """[b, L + T]: per resample, the weighted means of the L `linear` columns [N, L] and of the T `at_tau` columns
    [N, K, T] at the resample's threshold position k_of[b]."""
    b_count, num_groups = draws.shape
    n_lin, n_tau = linear.shape[1], at_tau.shape[2]
    out = np.empty((b_count, n_lin + n_tau))
    for b in nb.prange(b_count):
        counts = _counts(draws[b], num_groups)
        acc = np.zeros(n_lin + n_tau)
        total = 0.0
        k = k_of[b]
        for g in range(num_groups):
            c = counts[g]
            if c == 0:
                continue
            for p in range(offsets[g], offsets[g + 1]):
                i = members[p]
                total += c
                for col in range(n_lin):
                    acc[col] += c * linear[i, col]
                for col in range(n_tau):
                    acc[n_lin + col] += c * at_tau[i, k, col]
        for col in range(n_lin + n_tau):
            out[b, col] = acc[col] / total
    return out


# ---------------------------------------------------------------------------------------------------- values
@dataclass
class SampleValues:
    """What the resamples are computed from (all per sample, in test-set order)."""
    pos_max: np.ndarray                  # [N] positive map maxima (native resolution)
    neg_max: dict                        # kind -> [N, seeds] negative map maxima
    tau_kinds: list                      # kinds pooled for tau_U (empty: tau fixed or from a calibration set)
    sep_kinds: list                      # kinds pooled for Sep's Q3
    tau_quantile: float
    linear: dict                         # column -> [N] values averaged over samples
    at_tau: dict                         # column -> [N, K] values at the thresholds `ks` of the grid
    ks: np.ndarray                       # grid positions of the at_tau columns
    thresholds: np.ndarray               # the grid
    fixed_tau: float | None              # tau_U when it is not resampled
    img_emb: np.ndarray | None = None    # [N, C] unit-norm, for the modality-gap magnitude
    aud_emb: np.ndarray | None = None


def _pooled(neg_max: dict, kinds: list) -> tuple[np.ndarray, np.ndarray]:
    vals = [neg_max[k] for k in kinds]
    if not vals:
        return np.zeros(0), np.zeros(0, np.int64)
    values = np.concatenate([v.ravel() for v in vals])
    owners = np.concatenate([np.repeat(np.arange(v.shape[0]), v.shape[1]) for v in vals])
    order = np.argsort(values, kind="stable")
    return np.ascontiguousarray(values[order]), np.ascontiguousarray(owners[order])


def tau_distribution(res: Resampling, pos_max: np.ndarray, neg_max: dict, tau_kinds: list, sep_kinds: list,
                     q: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(tau_U, Q1 of the positive maxima, Q3 of the pooled Sep kinds) of every resample; tau_U is NaN where it is
    not resampled (no tau_kinds)."""
    order = np.argsort(pos_max, kind="stable")
    pos_sorted, pos_owner = np.ascontiguousarray(pos_max[order], dtype=np.float64), order.astype(np.int64)
    tau_vals, tau_own = _pooled(neg_max, tau_kinds)
    sep_vals, sep_own = (tau_vals, tau_own) if sep_kinds == tau_kinds else _pooled(neg_max, sep_kinds)
    tau = np.full(res.resamples, np.nan)
    q1, q3 = np.empty(res.resamples), np.empty(res.resamples)
    for start, draws in res.blocks():
        sl = slice(start, start + draws.shape[0])
        a = resample_quantiles(draws, res.groups, pos_sorted, pos_owner, tau_vals, tau_own, 0.25, q)
        q1[sl] = a[:, 0]
        if tau_kinds:
            tau[sl] = a[:, 1]
        if sep_kinds == tau_kinds:
            q3[sl] = a[:, 1]
        else:
            q3[sl] = resample_quantiles(draws, res.groups, pos_sorted, pos_owner, sep_vals, sep_own, 0.25, 0.75)[:, 1]
    return tau, q1, q3


def tau_band(tau: np.ndarray) -> np.ndarray:
    """BAND thresholds evenly over [min, max] of the resamples' tau_U (none when tau is not resampled)."""
    finite = tau[np.isfinite(tau)]
    if finite.size == 0 or finite.min() == finite.max():
        return np.zeros(0)
    return np.linspace(finite.min(), finite.max(), BAND)


def nearest(thresholds: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Position of the grid threshold nearest each value (the lower one on a tie)."""
    hi = np.clip(np.searchsorted(thresholds, values), 1, thresholds.size - 1)
    lo = hi - 1
    return np.where(np.abs(values - thresholds[lo]) <= np.abs(thresholds[hi] - values), lo, hi)


def distribution(res: Resampling, vals: SampleValues, quantiles=None) -> dict[str, np.ndarray]:
    """Every resample's value of every column (the linear and at_tau ones, `tau_U`, `Q1_pos`, `Q3_neg`,
    `modality_gap` when embeddings are given), through the kernels; `quantiles`: `tau_distribution`'s result when
    the caller has it already."""
    tau, q1, q3 = (quantiles if quantiles is not None else
                   tau_distribution(res, vals.pos_max, vals.neg_max, vals.tau_kinds, vals.sep_kinds,
                                    vals.tau_quantile))
    tau = tau.copy()
    if not vals.tau_kinds:
        tau[:] = vals.fixed_tau
    pos_in_ks = {int(k): j for j, k in enumerate(vals.ks)}
    k_of = np.array([pos_in_ks[int(k)] for k in nearest(vals.thresholds, tau)], dtype=np.int64)
    lin_names, tau_names = list(vals.linear), list(vals.at_tau)
    linear = np.ascontiguousarray(np.stack([vals.linear[c] for c in lin_names], axis=1) if lin_names
                                  else np.zeros((vals.pos_max.size, 0)), dtype=np.float64)
    at_tau = np.ascontiguousarray(np.stack([vals.at_tau[c] for c in tau_names], axis=2) if tau_names
                                  else np.zeros((vals.pos_max.size, max(len(vals.ks), 1), 0)), dtype=np.float64)
    means = np.empty((res.resamples, len(lin_names) + len(tau_names)))
    gap = np.empty(res.resamples) if vals.img_emb is not None else None
    for start, draws in res.blocks():
        sl = slice(start, start + draws.shape[0])
        means[sl] = weighted_means(draws, res.members, res.offsets, linear, at_tau, k_of[sl])
        if gap is not None:
            w = np.stack([np.bincount(d, minlength=res.num_groups) for d in draws])[:, res.groups].astype(np.float64)
            w /= w.sum(axis=1, keepdims=True)
            gap[sl] = np.linalg.norm(w @ vals.img_emb - w @ vals.aud_emb, axis=1)
    out = {c: means[:, j] for j, c in enumerate(lin_names + tau_names)}
    out.update(tau_U=tau, Q1_pos=q1, Q3_neg=q3)
    if gap is not None:
        out["modality_gap"] = gap
    return out


def reference_distribution(res: Resampling, vals: SampleValues) -> dict[str, np.ndarray]:
    """The same as `distribution`, the plain way: each resample's explicit list of sample indices, numpy's
    percentile and mean on it."""
    members = [res.members[res.offsets[g]:res.offsets[g + 1]] for g in range(res.num_groups)]
    cols = list(vals.linear) + list(vals.at_tau)
    out = {c: np.empty(res.resamples) for c in cols + ["tau_U", "Q1_pos", "Q3_neg"]}
    if vals.img_emb is not None:
        out["modality_gap"] = np.empty(res.resamples)
    pos_in_ks = {int(k): j for j, k in enumerate(vals.ks)}
    for start, draws in res.blocks():
        for r, draw in enumerate(draws):
            b = start + r
            idx = np.concatenate([members[g] for g in draw])

            def pooled(kinds):
                return np.concatenate([vals.neg_max[k][idx].ravel() for k in kinds])
            tau = np.percentile(pooled(vals.tau_kinds), 100 * vals.tau_quantile) if vals.tau_kinds \
                else vals.fixed_tau
            out["tau_U"][b] = tau if vals.tau_kinds else np.nan
            out["Q1_pos"][b] = np.percentile(vals.pos_max[idx], 25.0)
            out["Q3_neg"][b] = np.percentile(pooled(vals.sep_kinds), 75.0)
            k = pos_in_ks[int(nearest(vals.thresholds, np.array([tau]))[0])]
            for c in vals.linear:
                out[c][b] = vals.linear[c][idx].mean()
            for c in vals.at_tau:
                out[c][b] = vals.at_tau[c][idx, k].mean()
            if vals.img_emb is not None:
                out["modality_gap"][b] = np.linalg.norm(vals.img_emb[idx].mean(0) - vals.aud_emb[idx].mean(0))
    if not vals.tau_kinds:
        out["tau_U"][:] = vals.fixed_tau
    return out


def interval(values: np.ndarray, confidence: float) -> dict:
    """Percentile interval of the finite resample values: {"lo", "hi", "undefined": resamples left out}."""
    finite = values[np.isfinite(values)]
    alpha = (1.0 - confidence) / 2
    if finite.size == 0:
        return {"lo": float("nan"), "hi": float("nan"), "undefined": int(values.size)}
    lo, hi = np.percentile(finite, [100 * alpha, 100 * (1 - alpha)])
    return {"lo": float(lo), "hi": float(hi), "undefined": int(values.size - finite.size)}


def paired(dist_a: np.ndarray, dist_b: np.ndarray, value_a: float, value_b: float, confidence: float) -> dict:
    """B - A from two evaluations resampled alike (resample b drew the same groups for both): the observed
    difference, the percentile interval of the resamples' differences, and the two-sided bootstrap p-value
    2 min(P(d <= 0), P(d >= 0)) with the (count + 1) / (resamples + 1) estimate, capped at 1."""
    d = dist_b - dist_a
    finite = d[np.isfinite(d)]
    out = {"a": value_a, "b": value_b, "diff": value_b - value_a, **interval(d, confidence)}
    if finite.size == 0:
        return {**out, "p": float("nan")}
    below = (np.sum(finite <= 0) + 1) / (finite.size + 1)
    above = (np.sum(finite >= 0) + 1) / (finite.size + 1)
    return {**out, "p": float(min(1.0, 2 * min(below, above)))}
