"""`compute_all`: every metric of the paper's Tables 1-4 from plain numpy arrays, as one nested dict.

Inputs (all plain numpy; see docs/METRICS.md for every convention and docs/SCORE_FORMAT.md for the file format):
  maps_pos   [N, h, w]             raw similarity maps of the positive pairs, any native size
  gt         [N, S, S]             ground truth at the evaluation size S (default 224), nonzero = sounding object
  maps_neg   {kind: [N, h, w] or [N, K, h, w]}  raw maps of negative audio (silence, noise, offscreen; K seeds)
  image_ids  [N]                   optional grouping key per sample (IS3: the image stem) for iIoU / iAUC
  img_emb, aud_emb [N, C]          optional global embeddings (magnitude, alignment, cosine retrieval)
  retrieval_scores [N, N]          optional image-by-audio scores, e.g. the max-pooled cosine map (`max_map`)
  labels     [N]                   optional class labels (retrieval)
  calibration_maxima {kind: [M]}   optional native-resolution negative maxima of another set, for tau_U
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from tqdm import tqdm

from eval.metrics import bootstrap as bs, embeddings as emb, localization as loc, negatives as neg
from eval.metrics.kernels import ThresholdGrid, sweep

NEGATIVE_KINDS = ("silence", "noise", "offscreen")


class MetricError(ValueError):
    """Inputs or options the metrics cannot be computed from (wrong shapes, NaN maps, a bad option); the message names
    the array or option. The evaluator's commands turn it into their one-line user error."""


@dataclass
class MetricConfig:
    """Thresholds and options of the metrics (every default reproduces the public evaluation code)."""

    size: int = 224                      # evaluation resolution S (maps are upsampled to S x S)
    sweep_min: float = -1.0              # fine threshold grid for the metric-vs-threshold curves
    sweep_max: float = 1.0
    sweep_steps: int = 1001
    tau: float | None = None             # fixed universal threshold; None: the quantile of negative maxima
    tau_quantile: float = 0.75           # Q3
    tau_negatives: list[str] = field(default_factory=lambda: list(NEGATIVE_KINDS))  # pooled for tau_U and Sep
    fixed_threshold: float = 0.5         # vssl_eval's --threshold (pIA and IoU at a fixed value)
    ssltie_classic: bool = True          # also report SSL-TIE's own classic cIoU flavour (min-max, ties kept)
    magnitude: Literal["pair_l2", "modality_gap"] = "pair_l2"  # which reading fills Table 1's Magnitude column
    retrieval_score: Literal["max_map", "cosine"] = "max_map"  # which score fills Table 3
    retrieval_ks: list[int] = field(default_factory=lambda: [1, 5, 10])
    retrieval_exclude_self: bool = False
    chunk: int = 2048                    # maps per kernel call (bounds memory: chunk x thresholds int32)
    per_sample: bool = False             # include per-sample IoUs, maxima and pIA lists in the result
    progress: bool = False               # tqdm progress bars
    bootstrap: int = 2000                # resamples for the intervals of Tables 1-4 (0: none; eval.metrics.bootstrap)
    bootstrap_seed: int = 0
    confidence: float = 0.95

    def check(self) -> None:
        if self.size < 1 or self.chunk < 1:
            raise MetricError("metric config: size and chunk must be positive")
        if not (self.sweep_min < self.sweep_max) or self.sweep_steps < 2:
            raise MetricError("metric config: need sweep_min < sweep_max and sweep_steps >= 2")
        if not 0.0 < self.tau_quantile < 1.0:
            raise MetricError(f"metric config: tau_quantile {self.tau_quantile} is not in (0, 1)")
        unknown = sorted(set(self.tau_negatives) - set(NEGATIVE_KINDS))
        if unknown or not self.tau_negatives:
            raise MetricError(f"metric config: tau_negatives must be a non-empty subset of {list(NEGATIVE_KINDS)}")
        if any(k < 1 for k in self.retrieval_ks):
            raise MetricError("metric config: retrieval_ks must be positive")
        if self.bootstrap < 0 or not 0.0 < self.confidence < 1.0:
            raise MetricError("metric config: bootstrap must be >= 0 and confidence in (0, 1)")


def _finite_or_fail(name: str, arr: np.ndarray) -> None:
    bad = ~np.isfinite(arr.reshape(arr.shape[0], -1)).all(axis=1)
    if bad.any():
        raise MetricError(f"{name}: map of sample {int(np.argmax(bad))} holds NaN or inf "
                          f"({int(bad.sum())} such samples)")


def _check_inputs(maps_pos, gt, maps_neg, cfg):
    pos = np.asarray(maps_pos)
    if pos.ndim != 3 or pos.shape[0] == 0 or not np.issubdtype(pos.dtype, np.floating):
        raise MetricError(f"pos: expected float maps [N, h, w], got {pos.dtype} {pos.shape}")
    n = pos.shape[0]
    g = np.asarray(gt)
    if g.shape != (n, cfg.size, cfg.size):
        raise MetricError(f"gt: expected shape {(n, cfg.size, cfg.size)}, got {g.shape}")
    _finite_or_fail("pos", pos)
    negs = {}
    for kind, arr in (maps_neg or {}).items():
        if kind not in NEGATIVE_KINDS:
            raise MetricError(f"{kind}: unknown negative kind (expected one of {list(NEGATIVE_KINDS)})")
        a = np.asarray(arr)
        if a.ndim == 3:
            a = a[:, None]
        if a.ndim != 4 or a.shape[0] != n or not np.issubdtype(a.dtype, np.floating):
            raise MetricError(f"{kind}: expected float maps [{n}, h, w] or [{n}, seeds, h, w], got {a.dtype} {a.shape}")
        bad = ~np.isfinite(a.reshape(n, a.shape[1], -1)).all(axis=2)
        if bad.any():
            i, seed = np.argwhere(bad)[0]
            raise MetricError(f"{kind}: map of sample {int(i)} (seed {int(seed)}) holds NaN or inf "
                            f"({int(bad.sum())} such maps)")
        negs[kind] = a.astype(np.float32, copy=False)
    # maps are evaluated in float32, as the public code receives them from torch
    return pos.astype(np.float32, copy=False), g, negs


def _chunks(total: int, size: int, desc: str, progress: bool):
    starts = range(0, total, size)
    return tqdm(starts, desc=desc, unit="chunk", disable=not progress, leave=False)


def _index(thr: np.ndarray, value: float) -> int:
    """Position of a value that was put into the threshold grid."""
    return int(np.searchsorted(thr, value))


def compute_all(maps_pos: np.ndarray, gt: np.ndarray, maps_neg: Mapping[str, np.ndarray] | None = None, *,
                cfg: MetricConfig | None = None, image_ids=None, img_emb: np.ndarray | None = None,
                aud_emb: np.ndarray | None = None, retrieval_scores: np.ndarray | None = None, labels=None,
                calibration_maxima: Mapping[str, np.ndarray] | None = None, distributions: dict | None = None) -> dict:
    """Every metric as one JSON-ready nested dict (NaN where a value is undefined); see the module docstring.
    `distributions`, when given, receives each bootstrap resample's value of every table column, under
    (table, column), and of "tau_U" (to pair two evaluations resample by resample: eval.compare)."""
    cfg = cfg or MetricConfig()
    cfg.check()
    pos, gt_arr, negs = _check_inputs(maps_pos, gt, maps_neg, cfg)
    n = pos.shape[0]
    pixels = cfg.size * cfg.size
    pos_max = pos.reshape(n, -1).max(axis=1).astype(np.float64)
    neg_max = {k: a.reshape(a.shape[0] * a.shape[1], -1).max(axis=1).astype(np.float64) for k, a in negs.items()}

    # universal threshold
    if cfg.tau is not None:
        tau_info = {"tau_U": float(cfg.tau), "source": "fixed by the config"}
    else:
        source = calibration_maxima if calibration_maxima is not None else neg_max
        kinds = [k for k in cfg.tau_negatives if k in source]
        if not kinds:
            raise MetricError("tau_U needs negative maps (or calibration maxima) of the kinds "
                            f"{cfg.tau_negatives}, or a fixed tau")
        tau_info = neg.universal_threshold(source, kinds, cfg.tau_quantile)
        tau_info["source"] = "calibration set" if calibration_maxima is not None else "this set"
    tau = tau_info["tau_U"]

    boot = None
    if cfg.bootstrap:   # the resamples' tau_U first: the grid gets a band of thresholds over their range
        resampled = cfg.tau is None and calibration_maxima is None
        neg_by_sample = {k: v.reshape(n, -1) for k, v in neg_max.items()}
        tau_kinds = [k for k in cfg.tau_negatives if k in neg_max] if resampled else []
        sep_kinds = [k for k in cfg.tau_negatives if k in neg_max]
        res = bs.Resampling(bs.group_ids(image_ids, n), cfg.bootstrap, cfg.bootstrap_seed)
        quantiles = bs.tau_distribution(res, pos_max, neg_by_sample, tau_kinds, sep_kinds, cfg.tau_quantile)
        boot = {"res": res, "quantiles": quantiles, "neg": neg_by_sample, "tau_kinds": tau_kinds,
                "sep_kinds": sep_kinds, "linear": {}, "at_tau": {}}
    band = bs.tau_band(boot["quantiles"][0]) if boot else np.zeros(0)
    thr = np.unique(np.concatenate([np.linspace(cfg.sweep_min, cfg.sweep_max, cfg.sweep_steps), loc.GRID21,
                                    [cfg.fixed_threshold, tau], band]).astype(np.float64))
    grid = ThresholdGrid(thr)
    k_tau, k_fix = _index(thr, tau), _index(thr, cfg.fixed_threshold)
    if boot:
        taus = boot["quantiles"][0]
        boot["ks"] = np.unique(np.concatenate([[k_tau], bs.nearest(thr, taus[np.isfinite(taus)])])).astype(np.int64)

    # positives: one kernel pass per map
    above = np.empty((n, thr.size), dtype=np.int32)
    inter = np.empty((n, thr.size), dtype=np.int32)
    gcount = np.empty(n, dtype=np.int64)
    rank_thr = np.empty((n, 2))
    rank_above = np.empty((n, 3), dtype=np.int64)
    rank_inter = np.empty((n, 3), dtype=np.int64)
    for s in _chunks(n, cfg.chunk, "positive maps", cfg.progress):
        r = sweep(pos[s:s + cfg.chunk], grid, gt_arr[s:s + cfg.chunk], size=cfg.size, ssltie=cfg.ssltie_classic)
        e = s + r.above.shape[0]
        above[s:e], inter[s:e], gcount[s:e] = r.above, r.inter, r.gt_pixels
        rank_thr[s:e], rank_above[s:e], rank_inter[s:e] = r.rank_thr, r.rank_above, r.rank_inter
    ious = loc.iou_from_counts(inter, above, gcount[:, None])
    del above, inter
    classic = loc.iou_from_counts(rank_inter[:, 0], rank_above[:, 0], gcount)
    adaptive = loc.iou_from_counts(rank_inter[:, 1], rank_above[:, 1], gcount)
    positive = {
        "classic": loc.summary(classic, mean_is_ciou=False),
        "adaptive": loc.summary(adaptive, mean_is_ciou=False),
        "universal": {**loc.summary(ious[:, k_tau], mean_is_ciou=True), "threshold": tau},
        "fixed": {**loc.summary(ious[:, k_fix], mean_is_ciou=True), "threshold": cfg.fixed_threshold},
        "empty_gt_samples": int((gcount == 0).sum()),
        "maxima": neg.maxima_summary(pos_max),
    }
    if cfg.ssltie_classic:
        positive["classic_ssltie"] = loc.summary(
            loc.iou_from_counts(rank_inter[:, 2], rank_above[:, 2], gcount), mean_is_ciou=False)
    if image_ids is not None:
        ids = np.asarray(image_ids)
        if ids.shape != (n,):
            raise MetricError(f"image_ids: expected {n} ids, got shape {ids.shape}")
        positive["instance"] = {"classic": loc.instance_metrics(classic, ids),
                                "adaptive": loc.instance_metrics(adaptive, ids),
                                "universal": loc.instance_metrics(ious[:, k_tau], ids)}
    clean = loc.nan_to_zero(ious)
    curves = {"thresholds": thr.tolist(),
              "pos_cIoU": (100 * clean.mean(axis=0)).tolist(),
              "pos_AUC": (100 * loc.auc21(clean, axis=0)).tolist(),
              "pos_success50": (100 * loc.success_rate(clean, 0.5, axis=0)).tolist()}
    per_sample = {"iou_classic": classic, "iou_adaptive": adaptive, "iou_universal": ious[:, k_tau],
                  "max_pos": pos_max}
    if boot:
        at = loc.nan_to_zero(ious[:, boot["ks"]])
        boot["at_tau"].update(cIoU_Uth=100 * at, AUC_Uth=100 * loc.auc21_per_sample(at))
        boot["linear"].update(cIoU_Adap=100 * loc.success_rate(adaptive[None], 0.5, axis=0),
                              AUC_Adap=100 * loc.auc21_per_sample(adaptive))
    del ious, clean

    # negatives: pIA / AUCN at every threshold, plus at the positive map's own median and adaptive thresholds
    negatives = {}
    pia_curves, aucn_curves = {}, {}
    for kind, arr in negs.items():
        seeds = arr.shape[1]
        flat = arr.reshape(n * seeds, *arr.shape[2:])
        extra = np.repeat(rank_thr, seeds, axis=0)
        m = flat.shape[0]
        sum_above = np.zeros(thr.size)
        cdf = np.zeros((21, thr.size))
        sum_extra = np.zeros(2)
        cdf_extra = np.zeros((21, 2))
        pia_tau = np.empty(m)
        if boot:
            per_map = np.empty((m, boot["ks"].size, 2))           # pIA and AUCN contribution of each map
        for s in _chunks(m, cfg.chunk, f"{kind} maps", cfg.progress):
            r = sweep(flat[s:s + cfg.chunk], grid, None, size=cfg.size, extra=extra[s:s + cfg.chunk])
            sum_above += r.above.sum(axis=0)
            cdf += neg.pia_cdf_counts(r.above, pixels)
            sum_extra += r.extra_above.sum(axis=0)
            cdf_extra += neg.pia_cdf_counts(r.extra_above, pixels)
            pia_tau[s:s + r.above.shape[0]] = r.above[:, k_tau] / pixels
            if boot:
                per_map[s:s + r.above.shape[0]] = neg.per_map_pia_aucn(r.above[:, boot["ks"]], pixels)
        pia = 100 * sum_above / (m * pixels)
        aucn = 100 * neg.aucn_from_cdf(cdf, m)
        pia_extra = 100 * sum_extra / (m * pixels)
        aucn_extra = 100 * neg.aucn_from_cdf(cdf_extra, m)
        pia_curves[kind], aucn_curves[kind] = pia, aucn
        negatives[kind] = {
            "pIA": float(pia[k_tau]), "AUCN": float(aucn[k_tau]),
            "pIA_fixed": float(pia[k_fix]), "AUCN_fixed": float(aucn[k_fix]),
            "pIA_at_pos_median": float(pia_extra[0]), "AUCN_at_pos_median": float(aucn_extra[0]),
            "pIA_at_pos_adaptive": float(pia_extra[1]), "AUCN_at_pos_adaptive": float(aucn_extra[1]),
            "maps": m, "seeds": seeds, "maxima": neg.maxima_summary(neg_max[kind]),
        }
        curves[f"{kind}_pIA"] = pia.tolist()
        curves[f"{kind}_AUCN"] = aucn.tolist()
        per_sample[f"max_{kind}"] = neg_max[kind]
        per_sample[f"pia_{kind}"] = pia_tau
        if boot:
            tag = KIND_TAGS[kind]
            per_sample_mean = per_map.reshape(n, seeds, -1, 2).mean(axis=1)
            boot["at_tau"].update({f"pIA_{tag}": 100 * per_sample_mean[..., 0],
                                   f"AUCN_{tag}": 100 * per_sample_mean[..., 1]})

    result = {
        "format": 1, "samples": n, "size": cfg.size, "config": dataclasses.asdict(cfg),
        "thresholds": {**tau_info, "fixed": cfg.fixed_threshold, "grid_points": int(thr.size)},
        "positive": positive, "negatives": negatives,
    }
    if negatives:
        pos_u = positive["universal"]
        result["global"] = neg.global_scores(pos_u["cIoU"], pos_u["AUC"],
                                             {k: v["pIA"] for k, v in negatives.items()},
                                             {k: v["AUCN"] for k, v in negatives.items()})
        c = np.array(curves["pos_cIoU"])
        a = np.array(curves["pos_AUC"])
        neg_pia = np.mean([100 - pia_curves[k] for k in negatives], axis=0)
        neg_aucn = np.mean([aucn_curves[k] for k in negatives], axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            curves["FLOC"] = (2 * c * neg_pia / (c + neg_pia)).tolist()
            curves["FAUC"] = (2 * a * neg_aucn / (a + neg_aucn)).tolist()
        sep_kinds = [k for k in cfg.tau_negatives if k in neg_max]
        if sep_kinds:
            result["separability"] = neg.separability(pos_max, neg_max, sep_kinds)
    result.update(_embedding_metrics(cfg, n, img_emb, aud_emb, retrieval_scores, labels, boot))
    result["tables"] = _paper_tables(result, cfg)
    if boot:
        result["intervals"] = _intervals(boot, cfg, pos_max, thr, tau, result, distributions)
    result["curves"] = curves
    if cfg.per_sample:
        result["per_sample"] = {k: np.asarray(v).tolist() for k, v in per_sample.items()}
    return result


def _intervals(boot: dict, cfg: MetricConfig, pos_max: np.ndarray, thr: np.ndarray, tau: float, result: dict,
               distributions: dict | None = None) -> dict:
    """The bootstrap intervals of every column of Tables 1-4 (eval.metrics.bootstrap), as {"lo", "hi",
    "undefined"} under the tables' keys, and of tau_U."""
    vals = bs.SampleValues(pos_max=pos_max, neg_max=boot["neg"], tau_kinds=boot["tau_kinds"],
                           sep_kinds=boot["sep_kinds"], tau_quantile=cfg.tau_quantile, linear=boot["linear"],
                           at_tau=boot["at_tau"], ks=boot["ks"], thresholds=thr, fixed_tau=tau,
                           img_emb=boot.get("img_emb"), aud_emb=boot.get("aud_emb"))
    d = bs.distribution(boot["res"], vals, boot["quantiles"])
    kinds = [k for k in NEGATIVE_KINDS if f"pIA_{KIND_TAGS[k]}" in d]
    with np.errstate(invalid="ignore", divide="ignore"):
        if kinds and "cIoU_Uth" in d:
            neg_pia = np.mean([100.0 - d[f"pIA_{KIND_TAGS[k]}"] for k in kinds], axis=0)
            neg_aucn = np.mean([d[f"AUCN_{KIND_TAGS[k]}"] for k in kinds], axis=0)
            d["FLOC"] = 2 * d["cIoU_Uth"] * neg_pia / (d["cIoU_Uth"] + neg_pia)
            d["FAUC"] = 2 * d["AUC_Uth"] * neg_aucn / (d["AUC_Uth"] + neg_aucn)
        if boot["sep_kinds"]:
            d["Sep"] = d["Q1_pos"] - d["Q3_neg"]
    magnitude = "modality_gap" if cfg.magnitude == "modality_gap" else "magnitude_pair_l2"
    d["Separability"], d["Magnitude"] = d.get("Sep"), d.get(magnitude)
    out = {"confidence": cfg.confidence, "resamples": cfg.bootstrap, "seed": cfg.bootstrap_seed,
           "unit": "image group", "groups": boot["res"].num_groups,
           "tau_band": [float(thr[boot["ks"]].min()), float(thr[boot["ks"]].max()), int(boot["ks"].size)],
           "tau_U": bs.interval(d["tau_U"], cfg.confidence), "tables": {}}
    for table, cols in result["tables"].items():
        out["tables"][table] = {c: bs.interval(d[c], cfg.confidence) for c in cols
                                if d.get(c) is not None and np.isfinite(cols[c])}
        if distributions is not None:
            distributions.update({(table, c): d[c] for c in out["tables"][table]})
    if distributions is not None:
        distributions["tau_U"] = d["tau_U"]
    return out


KIND_TAGS = {"silence": "S", "noise": "N", "offscreen": "O"}
DIRECTION_TAGS = {"image_to_audio": "I2A", "audio_to_image": "A2I"}


def _embedding_metrics(cfg, n, img_emb, aud_emb, scores, labels, boot=None) -> dict:
    out: dict = {}
    if (img_emb is None) != (aud_emb is None):
        raise MetricError("embeddings: give both img_emb and aud_emb, or neither")
    if img_emb is not None:
        img_emb, aud_emb = np.asarray(img_emb), np.asarray(aud_emb)
        if img_emb.ndim != 2 or img_emb.shape[0] != n or img_emb.shape != aud_emb.shape:
            raise MetricError(f"embeddings: expected img_emb and aud_emb [{n}, C], got {img_emb.shape} and "
                            f"{aud_emb.shape}")
        _finite_or_fail("img_emb", img_emb)
        _finite_or_fail("aud_emb", aud_emb)
        am = emb.alignment_magnitude(img_emb, aud_emb)
        out["embeddings"] = {**am, "magnitude": am[f"magnitude_{cfg.magnitude}"], "magnitude_reading": cfg.magnitude}
        if boot:
            v, a = emb.l2_normalize(img_emb, axis=1), emb.l2_normalize(aud_emb, axis=1)
            boot["linear"].update(Alignment=np.sum(v * a, axis=1), magnitude_pair_l2=np.linalg.norm(v - a, axis=1))
            if cfg.magnitude == "modality_gap":
                boot["img_emb"], boot["aud_emb"] = v, a
    if scores is not None:
        scores = np.asarray(scores)
        if scores.shape != (n, n):
            raise MetricError(f"retrieval_scores: expected [{n}, {n}], got {scores.shape}")
        _finite_or_fail("retrieval_scores", scores)
    if labels is not None:
        labels = np.asarray(labels)
        if labels.shape != (n,):
            raise MetricError(f"labels: expected {n} labels, got shape {labels.shape}")
        retr: dict = {}
        matrices = {}
        if scores is not None:
            matrices["max_map"] = scores
        if img_emb is not None:
            matrices["cosine"] = emb.l2_normalize(img_emb, axis=1) @ emb.l2_normalize(aud_emb, axis=1).T
        for name, mat in matrices.items():
            retr[name] = emb.retrieval(mat, labels, cfg.retrieval_ks, cfg.retrieval_exclude_self)
        if retr:
            retr["table_score"] = cfg.retrieval_score if cfg.retrieval_score in retr else None
            out["retrieval"] = retr
            if boot and retr["table_score"]:
                per_query = emb.retrieval_per_query(matrices[retr["table_score"]], labels, cfg.retrieval_ks,
                                                    cfg.retrieval_exclude_self)
                for (direction, metric), values in per_query.items():
                    boot["linear"][f"{DIRECTION_TAGS[direction]}_{metric}"] = values
    return out


def _paper_tables(res: dict, cfg: MetricConfig) -> dict:
    """The numbers of the paper's Tables 1-4 under their column names (NaN where the inputs were missing)."""
    nan = float("nan")
    pos, negs = res["positive"], res["negatives"]
    g = res.get("global", {})

    def neg_val(kind: str, key: str) -> float:
        return negs[kind][key] if kind in negs else nan

    sep = res.get("separability", {}).get("Sep", nan)
    table2 = {"cIoU_Uth": pos["universal"]["cIoU"], "cIoU_Adap": pos["adaptive"]["cIoU"],
              "AUC_Uth": pos["universal"]["AUC"], "AUC_Adap": pos["adaptive"]["AUC"],
              "pIA_S": neg_val("silence", "pIA"), "AUCN_S": neg_val("silence", "AUCN"),
              "pIA_N": neg_val("noise", "pIA"), "AUCN_N": neg_val("noise", "AUCN"),
              "pIA_O": neg_val("offscreen", "pIA"), "AUCN_O": neg_val("offscreen", "AUCN"),
              "FLOC": g.get("FLOC", nan), "FAUC": g.get("FAUC", nan)}
    e = res.get("embeddings", {})
    tables = {
        "table1": {"Magnitude": e.get("magnitude", nan), "Alignment": e.get("alignment", nan), "Separability": sep},
        "table2": table2,
        "table4": {"cIoU_Uth": table2["cIoU_Uth"], "pIA_S": table2["pIA_S"], "pIA_N": table2["pIA_N"],
                   "pIA_O": table2["pIA_O"], "FLOC": table2["FLOC"], "Sep": sep},
    }
    retr = res.get("retrieval", {})
    chosen = retr.get(retr.get("table_score") or "", None)
    table3 = {}
    for direction, tag in (("image_to_audio", "I2A"), ("audio_to_image", "A2I")):
        for k in cfg.retrieval_ks:
            for metric in ("P", "A"):
                table3[f"{tag}_{metric}@{k}"] = chosen[direction][f"{metric}@{k}"] if chosen else nan
    tables["table3"] = table3
    return tables
