"""Every number compute_all returns is read here, and equals an independent computation: the plain-numpy reference
(eval.metrics.reference: one sample, one threshold at a time) for the point values and curves, and for the bootstrap
intervals a plain loop that recomputes each table column on each resample's explicit list of samples. The result's
set of keys must equal the expected one, so an output that no test reads fails here."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from eval.metrics import MetricConfig, bootstrap as bs, compute_all, reference as ref

S = 64                      # evaluation size (the reference loops stay fast)
IDS = np.array(["a", "a", "b", "c", "c", "d", "e", "e"])   # IS3-like: three images with two targets
N = IDS.size
KINDS = ("silence", "noise", "offscreen")
TAGS = {"silence": "S", "noise": "N", "offscreen": "O"}


def _case():
    rng = np.random.default_rng(5)
    pos = (0.45 + 0.3 * rng.standard_normal((N, 7, 7))).astype(np.float32)
    pos[3, 2:5, 1:6] = 0.6                                   # a plateau that ties
    gt = np.zeros((N, S, S), np.uint8)
    for i in range(N):
        y, x = rng.integers(0, 40, 2)
        gt[i, y:y + rng.integers(10, 30), x:x + rng.integers(10, 30)] = 1
    gt[1] = 0                                                # empty GT
    gt[6] = 1                                                # full GT
    negs = {"silence": (0.2 + 0.2 * rng.standard_normal((N, 7, 7))).astype(np.float32),
            "noise": (0.2 + 0.2 * rng.standard_normal((N, 2, 7, 7))).astype(np.float32),
            "offscreen": (0.2 + 0.2 * rng.standard_normal((N, 3, 7, 7))).astype(np.float32)}
    extra = {"img_emb": rng.standard_normal((N, 6)), "aud_emb": rng.standard_normal((N, 6)),
             "retrieval_scores": rng.standard_normal((N, N)), "labels": np.array([0, 1, 2, 0, 1, 2, 0, 1]),
             "image_ids": IDS}
    return pos, gt, negs, extra


def _flat(d, prefix=()):
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, prefix + (k,)))
        else:
            out[prefix + (k,)] = v
    return out


def _same(got, want, path):
    if isinstance(want, str) or isinstance(want, list) and want and isinstance(want[0], str):
        assert got == want, path
        return
    g, w = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    assert g.shape == w.shape, (path, g.shape, w.shape)
    assert np.array_equal(np.isnan(g), np.isnan(w)), (path, got, want)
    ok = ~np.isnan(w)
    assert np.allclose(g[ok], w[ok], rtol=1e-9, atol=1e-9), (path, got, want)
    if isinstance(want, (int, np.integer)) and not isinstance(want, bool):
        assert float(got) == float(want), path


def _nan0(v):
    return np.where(np.isnan(v), 0.0, v)


def _harmonic(a, b):
    return ref.harmonic_ref(a, b) if a + b != 0 else float("nan")


def _summary_rank(ious):          # classic / adaptive: success rate at 0.5, NaN kept
    return {"cIoU": 100 * ref.success_ref(ious), "AUC": 100 * ref.auc_ref(ious),
            "mean_IoU": 100 * ref.mean_nan0_ref(ious), "nan_samples": int(np.isnan(ious).sum())}


def _summary_mean(ious):          # universal / fixed thresholds: mean IoU, NaN -> 0
    clean = list(_nan0(ious))
    return {"cIoU": 100 * ref.mean_nan0_ref(ious), "AUC": 100 * ref.auc_ref(clean),
            "success50": 100 * ref.success_ref(clean), "nan_samples": int(np.isnan(ious).sum())}


def _maxima(m):
    m = np.ravel(m).astype(np.float64)
    return {"mean": m.mean(), "median": np.median(m), "q1": np.percentile(m, 25), "q3": np.percentile(m, 75),
            "min": m.min(), "max": m.max()}


def _per_query(scores, labels, k):
    """[N] P@k and A@k (fractions) of each row as a query."""
    rows = [ref.retrieval_ref(scores[i:i + 1], labels[i:i + 1], labels, k) for i in range(scores.shape[0])]
    return np.array([r[0] for r in rows]), np.array([r[1] for r in rows])


def _expected(pos, gt, negs, x, cfg):
    """The whole result of compute_all, computed the plain way."""
    ups = [ref.upsample_ref(m, S) for m in pos]
    pos_max = pos.reshape(N, -1).max(axis=1).astype(np.float64)
    neg4 = {k: (v if v.ndim == 4 else v[:, None]) for k, v in negs.items()}
    neg_max = {k: v.reshape(N, v.shape[1], -1).max(axis=2).astype(np.float64) for k, v in neg4.items()}  # [N, seeds]
    tau = float(np.percentile(np.concatenate([neg_max[k].ravel() for k in KINDS]), 75))

    # the resamples: groups in order of first appearance, each resample's explicit list of samples
    first = {name: g for g, name in enumerate(dict.fromkeys(IDS))}
    groups = np.array([first[name] for name in IDS])
    members = [np.flatnonzero(groups == g) for g in range(len(first))]
    draws = np.concatenate([d for _, d in bs.Resampling(groups, cfg.bootstrap, cfg.bootstrap_seed).blocks()])
    idxs = [np.concatenate([members[g] for g in d]) for d in draws]
    tau_b = np.array([np.percentile(np.concatenate([neg_max[k][i].ravel() for k in KINDS]), 75) for i in idxs])
    band = np.linspace(tau_b.min(), tau_b.max(), bs.BAND)
    thr = np.unique(np.concatenate([np.linspace(cfg.sweep_min, cfg.sweep_max, cfg.sweep_steps), ref.GRID21,
                                    [cfg.fixed_threshold, tau], band]))
    k_tau, k_fix = int(np.flatnonzero(thr == tau)[0]), int(np.flatnonzero(thr == cfg.fixed_threshold)[0])

    above, inter = ref.sweep_ref(pos, gt, thr, S)
    g = (gt != 0).reshape(N, -1).sum(axis=1)[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        ious = np.where(g + above - inter > 0, inter / (g + above - inter), np.nan)          # [N, T]
    t_med = [ref.median_threshold_ref(u) for u in ups]
    t_adap = [ref.adaptive_threshold_ref(u, gg) for u, gg in zip(ups, gt)]
    classic = np.array([ref.iou_ref(u, gg, t) for u, gg, t in zip(ups, gt, t_med)])
    adaptive = np.array([ref.iou_ref(u, gg, t) for u, gg, t in zip(ups, gt, t_adap)])
    ssltie = np.array([ref.ssltie_iou_ref(u, gg) for u, gg in zip(ups, gt)])

    pia = {}                                                   # kind -> [N, seeds, T] fractions
    pia_pos = {}                                               # kind -> [N, seeds, 2] at the median / adaptive
    for k, v in neg4.items():
        a, _ = ref.sweep_ref(v.reshape(-1, 7, 7), None, thr, S)
        pia[k] = a.reshape(N, v.shape[1], -1) / S ** 2
        pia_pos[k] = np.array([[[ref.pia_ref(ref.upsample_ref(m, S), t) for t in (t_med[i], t_adap[i])]
                                for m in v[i]] for i in range(N)])

    e = {"format": 1, "samples": N, "size": S, "config": dataclasses.asdict(cfg)}
    e["thresholds"] = {"tau_U": tau, "quantile": 0.75, "kinds": list(KINDS), "pooled_maps": N * 6,
                       "per_kind": {k: np.percentile(neg_max[k], 75) for k in KINDS}, "source": "this set",
                       "fixed": 0.5, "grid_points": thr.size}
    e["positive"] = {"classic": _summary_rank(classic), "adaptive": _summary_rank(adaptive),
                     "universal": {**_summary_mean(ious[:, k_tau]), "threshold": tau},
                     "fixed": {**_summary_mean(ious[:, k_fix]), "threshold": 0.5},
                     "empty_gt_samples": 1, "maxima": _maxima(pos_max),
                     "classic_ssltie": _summary_rank(ssltie),
                     "instance": {name: {"iIoU": 100 * ref.iiou_ref(v, IDS, 0.5), "iAUC": 100 * ref.iauc_ref(v, IDS),
                                         "images": 5}
                                  for name, v in (("classic", classic), ("adaptive", adaptive),
                                                  ("universal", ious[:, k_tau]))}}
    e["negatives"] = {}
    for k, v in neg4.items():
        row = {}
        for name, lists in (("", pia[k][..., k_tau]), ("_fixed", pia[k][..., k_fix]),
                            ("_at_pos_median", pia_pos[k][..., 0]), ("_at_pos_adaptive", pia_pos[k][..., 1])):
            row[f"pIA{name}"] = 100 * lists.mean()
            row[f"AUCN{name}"] = 100 * ref.aucn_ref(lists.ravel())
        e["negatives"][k] = {**row, "maps": N * v.shape[1], "seeds": v.shape[1], "maxima": _maxima(neg_max[k])}
    u = e["positive"]["universal"]
    pias = {k: e["negatives"][k]["pIA"] for k in KINDS}
    aucns = {k: e["negatives"][k]["AUCN"] for k in KINDS}
    e["global"] = {"FLOC": _harmonic(u["cIoU"], np.mean([100 - pias[k] for k in KINDS])),
                   "FAUC": _harmonic(u["AUC"], np.mean([aucns[k] for k in KINDS])),
                   "FLOC_per_kind": {k: _harmonic(u["cIoU"], 100 - pias[k]) for k in KINDS},
                   "FAUC_per_kind": {k: _harmonic(u["AUC"], aucns[k]) for k in KINDS}, "kinds": list(KINDS)}
    q1 = np.percentile(pos_max, 25)
    e["separability"] = {"Sep": q1 - tau, "Q1_pos": q1, "Q3_neg": tau, "kinds": list(KINDS),
                         "per_kind": {k: q1 - np.percentile(neg_max[k], 75) for k in KINDS}}
    vn = x["img_emb"] / np.linalg.norm(x["img_emb"], axis=1, keepdims=True)
    an = x["aud_emb"] / np.linalg.norm(x["aud_emb"], axis=1, keepdims=True)
    pair = np.array([np.linalg.norm(vn[i] - an[i]) for i in range(N)])
    align = np.array([vn[i] @ an[i] for i in range(N)])
    gap = np.linalg.norm(vn.mean(0) - an.mean(0))
    e["embeddings"] = {"alignment": align.mean(), "magnitude_pair_l2": pair.mean(), "magnitude_modality_gap": gap,
                       "magnitude": gap if cfg.magnitude == "modality_gap" else pair.mean(),
                       "magnitude_reading": cfg.magnitude}
    labels = x["labels"]
    mats = {"max_map": x["retrieval_scores"], "cosine": vn @ an.T}
    per_query = {}                                             # (score, tag, metric) -> [N] in %
    for name, m in mats.items():
        for direction, tag, mat in (("image_to_audio", "I2A", m), ("audio_to_image", "A2I", m.T)):
            for kk in (1, 5, 10):
                p, a = _per_query(mat, labels, kk)
                per_query[name, f"{tag}_P@{kk}"], per_query[name, f"{tag}_A@{kk}"] = 100 * p, 100 * a
    e["retrieval"] = {name: {direction: {f"{metric}@{kk}": per_query[name, f"{tag}_{metric}@{kk}"].mean()
                                         for kk in (1, 5, 10) for metric in ("P", "A")}
                             for direction, tag in (("image_to_audio", "I2A"), ("audio_to_image", "A2I"))}
                      for name in mats}
    e["retrieval"]["table_score"] = cfg.retrieval_score
    table2 = {"cIoU_Uth": u["cIoU"], "cIoU_Adap": e["positive"]["adaptive"]["cIoU"], "AUC_Uth": u["AUC"],
              "AUC_Adap": e["positive"]["adaptive"]["AUC"]}
    for k in KINDS:
        table2[f"pIA_{TAGS[k]}"], table2[f"AUCN_{TAGS[k]}"] = pias[k], aucns[k]
    table2["FLOC"], table2["FAUC"] = e["global"]["FLOC"], e["global"]["FAUC"]
    e["tables"] = {"table1": {"Magnitude": e["embeddings"]["magnitude"], "Alignment": align.mean(),
                              "Separability": q1 - tau},
                   "table2": table2,
                   "table4": {c: table2[c] for c in ("cIoU_Uth", "pIA_S", "pIA_N", "pIA_O", "FLOC")} | {"Sep": q1 - tau},
                   "table3": {c: per_query[name, c].mean() for name, c in per_query
                              if name == cfg.retrieval_score}}

    # each resample's value of each column, recomputed on its list of samples
    dist: dict = {"tau_U": tau_b}
    cols = {c: np.empty(len(idxs)) for t in e["tables"].values() for c in t}
    ks = []
    for b, idx in enumerate(idxs):
        kb = int(np.argmin(np.abs(thr - tau_b[b])))
        ks.append(kb)
        at = ious[idx, kb]
        c = {"cIoU_Uth": 100 * ref.mean_nan0_ref(at), "AUC_Uth": 100 * ref.auc_ref(list(_nan0(at))),
             "cIoU_Adap": 100 * ref.success_ref(adaptive[idx]), "AUC_Adap": 100 * ref.auc_ref(adaptive[idx])}
        for k in KINDS:
            lists = pia[k][idx][..., kb]
            c[f"pIA_{TAGS[k]}"], c[f"AUCN_{TAGS[k]}"] = 100 * lists.mean(), 100 * ref.aucn_ref(lists.ravel())
        with np.errstate(invalid="ignore", divide="ignore"):
            neg_p = np.mean([100 - c[f"pIA_{TAGS[k]}"] for k in KINDS])
            c["FLOC"] = 2 * c["cIoU_Uth"] * neg_p / (c["cIoU_Uth"] + neg_p)
            neg_a = np.mean([c[f"AUCN_{TAGS[k]}"] for k in KINDS])
            c["FAUC"] = 2 * c["AUC_Uth"] * neg_a / (c["AUC_Uth"] + neg_a)
        sep = np.percentile(pos_max[idx], 25) - tau_b[b]
        c["Sep"] = c["Separability"] = sep
        c["Alignment"] = align[idx].mean()
        c["Magnitude"] = (np.linalg.norm(vn[idx].mean(0) - an[idx].mean(0)) if cfg.magnitude == "modality_gap"
                          else pair[idx].mean())
        for (name, col), values in per_query.items():
            if name == cfg.retrieval_score:
                c[col] = values[idx].mean()
        for col in cols:
            cols[col][b] = c[col]
    ks = np.unique([k_tau] + ks)

    def interval(v):
        fin = v[np.isfinite(v)]
        lo, hi = np.percentile(fin, [2.5, 97.5]) if fin.size else (np.nan, np.nan)
        return {"lo": lo, "hi": hi, "undefined": int(v.size - fin.size)}

    e["intervals"] = {"confidence": 0.95, "resamples": cfg.bootstrap, "seed": cfg.bootstrap_seed,
                      "unit": "image group", "groups": len(members),
                      "tau_band": [thr[ks].min(), thr[ks].max(), ks.size], "tau_U": interval(tau_b),
                      "tables": {t: {c: interval(cols[c]) for c in table if np.isfinite(table[c])}
                                 for t, table in e["tables"].items()}}
    for t, table in e["tables"].items():
        dist.update({(t, c): cols[c] for c in table if np.isfinite(table[c])})

    clean = _nan0(ious)
    curves = {"thresholds": thr, "pos_cIoU": 100 * clean.mean(axis=0),
              "pos_AUC": [100 * ref.auc_ref(list(clean[:, k])) for k in range(thr.size)],
              "pos_success50": [100 * ref.success_ref(list(clean[:, k])) for k in range(thr.size)]}
    for k in KINDS:
        flat = pia[k].reshape(-1, thr.size)
        curves[f"{k}_pIA"] = 100 * flat.mean(axis=0)
        curves[f"{k}_AUCN"] = np.array([100 * ref.aucn_ref(flat[:, j]) for j in range(thr.size)])
    with np.errstate(invalid="ignore", divide="ignore"):
        neg_p = np.mean([100 - curves[f"{k}_pIA"] for k in KINDS], axis=0)
        neg_a = np.mean([curves[f"{k}_AUCN"] for k in KINDS], axis=0)
        c_, a_ = curves["pos_cIoU"], np.array(curves["pos_AUC"])
        curves["FLOC"], curves["FAUC"] = 2 * c_ * neg_p / (c_ + neg_p), 2 * a_ * neg_a / (a_ + neg_a)
    e["curves"] = curves
    e["per_sample"] = {"iou_classic": classic, "iou_adaptive": adaptive, "iou_universal": ious[:, k_tau],
                       "max_pos": pos_max}
    for k in KINDS:
        e["per_sample"][f"max_{k}"] = neg_max[k].ravel()
        e["per_sample"][f"pia_{k}"] = pia[k][..., k_tau].ravel()
    return e, dist


@pytest.mark.parametrize("magnitude, score", [("pair_l2", "max_map"), ("modality_gap", "cosine")])
def test_every_output_is_checked_against_the_plain_computation(magnitude, score):
    pos, gt, negs, x = _case()
    cfg = MetricConfig(size=S, sweep_steps=41, bootstrap=60, bootstrap_seed=3, per_sample=True, chunk=3,
                       magnitude=magnitude, retrieval_score=score)
    distributions: dict = {}
    got = compute_all(pos, gt, negs, cfg=cfg, distributions=distributions, **x)
    want, want_dist = _expected(pos, gt, negs, x, cfg)
    flat_got, flat_want = _flat(got), _flat(want)
    assert sorted(flat_got) == sorted(flat_want)
    for path, value in flat_want.items():
        _same(flat_got[path], value, path)
    assert sorted(distributions, key=str) == sorted(want_dist, key=str)
    for key, values in want_dist.items():
        _same(distributions[key], values, key)
    # the case is not degenerate: the intervals have width, and the negatives light some pixels at tau_U
    assert got["intervals"]["tables"]["table2"]["pIA_O"]["hi"] > got["intervals"]["tables"]["table2"]["pIA_O"]["lo"]
    assert all(got["negatives"][k]["pIA"] > 0 for k in KINDS)
