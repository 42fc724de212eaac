"""compute_all (Numba) equals the plain-numpy reference within 1e-6 on random maps, boxes and masks, edge cases
included; bad inputs give a clear MetricError."""
import numpy as np
import pytest

from eval.metrics import MetricConfig, MetricError, compute_all, reference as ref
from eval.metrics.embeddings import l2_normalize, max_map_scores
from eval.metrics.gt import boxes_to_mask, masks_from_boxes

N = 9


def _inputs():
    rng = np.random.default_rng(11)
    pos = (0.3 + 0.25 * rng.standard_normal((N, 14, 14))).astype(np.float32)
    pos[2] = 0.4                                             # constant map
    pos[4, 3:9] = 0.5                                        # a plateau that ties
    gt = np.zeros((N, 224, 224), np.uint8)
    for i in range(N):
        x0, y0 = rng.integers(0, 140, 2)
        gt[i, y0:y0 + rng.integers(20, 84), x0:x0 + rng.integers(20, 84)] = 1
    gt[2] = 0                                                # constant map with empty GT: NaN
    gt[5] = 0                                                # empty GT
    gt[6] = 1                                                # full GT
    gt[7] = rng.random((224, 224)) < 0.3                     # a ragged mask
    negs = {"silence": (0.1 * rng.standard_normal((N, 14, 14))).astype(np.float32),
            "noise": (0.15 * rng.standard_normal((N, 2, 7, 7))).astype(np.float32),
            "offscreen": (0.2 + 0.2 * rng.standard_normal((N, 3, 14, 14))).astype(np.float32)}
    return rng, pos, gt, negs


def _close(a, b):
    assert (np.isnan(a) and np.isnan(b)) or abs(a - b) < 1e-6, (a, b)


def test_compute_all_equals_reference():
    rng, pos, gt, negs = _inputs()
    ids = np.array(["a", "a", "b", "c", "c", "d", "e", "e", "f"])
    img, aud = rng.standard_normal((N, 8)), rng.standard_normal((N, 8))
    labels = rng.integers(0, 3, N)
    scores = rng.standard_normal((N, N))
    cfg = MetricConfig(sweep_steps=101, chunk=4)               # several kernel calls per kind
    r = compute_all(pos, gt, negs, cfg=cfg, image_ids=ids, img_emb=img, aud_emb=aud, retrieval_scores=scores,
                    labels=labels)

    ups = [ref.upsample_ref(m) for m in pos]
    neg_max = {k: v.reshape(-1, v.shape[-2] * v.shape[-1]).max(axis=1) for k, v in negs.items()}
    pooled = np.concatenate(list(neg_max.values()))
    tau = float(np.percentile(pooled.astype(np.float64), 75))
    _close(r["thresholds"]["tau_U"], tau)

    classic = [ref.iou_ref(u, g, ref.median_threshold_ref(u)) for u, g in zip(ups, gt)]
    adaptive = [ref.iou_ref(u, g, ref.adaptive_threshold_ref(u, g)) for u, g in zip(ups, gt)]
    universal = [ref.iou_ref(u, g, tau) for u, g in zip(ups, gt)]
    fixed = [ref.iou_ref(u, g, 0.5) for u, g in zip(ups, gt)]
    ssltie = [ref.ssltie_iou_ref(u, g) for u, g in zip(ups, gt)]
    assert np.isnan(classic[2])
    p = r["positive"]
    for key, ious in (("classic", classic), ("adaptive", adaptive), ("classic_ssltie", ssltie)):
        _close(p[key]["cIoU"], 100 * ref.success_ref(ious, 0.5))
        _close(p[key]["AUC"], 100 * ref.auc_ref(ious))
    for key, ious in (("universal", universal), ("fixed", fixed)):
        clean = [0.0 if np.isnan(v) else v for v in ious]
        _close(p[key]["cIoU"], 100 * ref.mean_nan0_ref(ious))
        _close(p[key]["AUC"], 100 * ref.auc_ref(clean))
    for key, ious in (("classic", classic), ("adaptive", adaptive), ("universal", universal)):
        _close(p["instance"][key]["iIoU"], 100 * ref.iiou_ref(ious, ids, 0.5))
        _close(p["instance"][key]["iAUC"], 100 * ref.iauc_ref(ious, ids))

    pia, aucn = {}, {}
    for kind, arr in negs.items():
        a4 = arr if arr.ndim == 4 else arr[:, None]
        lists = {"tau": [], "fixed": [], "med": [], "adap": []}
        for i in range(N):
            t_med = ref.median_threshold_ref(ups[i])
            t_adap = ref.adaptive_threshold_ref(ups[i], gt[i])
            for m in a4[i]:
                u = ref.upsample_ref(m)
                for name, t in (("tau", tau), ("fixed", 0.5), ("med", t_med), ("adap", t_adap)):
                    lists[name].append(ref.pia_ref(u, t))
        got = r["negatives"][kind]
        for name, key in (("tau", ""), ("fixed", "_fixed"), ("med", "_at_pos_median"), ("adap", "_at_pos_adaptive")):
            _close(got[f"pIA{key}"], 100 * np.mean(lists[name]))
            _close(got[f"AUCN{key}"], 100 * ref.aucn_ref(lists[name]))
        pia[kind], aucn[kind] = 100 * np.mean(lists["tau"]), 100 * ref.aucn_ref(lists["tau"])
    c, a = 100 * ref.mean_nan0_ref(universal), 100 * ref.auc_ref([0.0 if np.isnan(v) else v for v in universal])
    _close(r["global"]["FLOC"], ref.harmonic_ref(c, np.mean([100 - v for v in pia.values()])))
    _close(r["global"]["FAUC"], ref.harmonic_ref(a, np.mean(list(aucn.values()))))
    for kind in negs:
        _close(r["global"]["FLOC_per_kind"][kind], ref.harmonic_ref(c, 100 - pia[kind]))
        _close(r["global"]["FAUC_per_kind"][kind], ref.harmonic_ref(a, aucn[kind]))
    pos_max = pos.reshape(N, -1).max(axis=1).astype(np.float64)
    _close(r["separability"]["Sep"], np.percentile(pos_max, 25) - tau)

    # the curves at a few thresholds of the grid, one threshold at a time
    thr = np.array(r["curves"]["thresholds"])
    picks = [0, 30, 60, int(np.searchsorted(thr, tau)), len(thr) - 1]
    above, inter = ref.sweep_ref(pos, gt, thr[picks])
    g = (gt != 0).reshape(N, -1).sum(axis=1)
    for j, k in enumerate(picks):
        ious = [inter[i, j] / (g[i] + above[i, j] - inter[i, j]) if g[i] + above[i, j] - inter[i, j] else np.nan
                for i in range(N)]
        _close(r["curves"]["pos_cIoU"][k], 100 * ref.mean_nan0_ref(ious))
    noise_above, _ = ref.sweep_ref(negs["noise"].reshape(-1, 7, 7), None, thr[picks])
    for j, k in enumerate(picks):
        _close(r["curves"]["noise_pIA"][k], 100 * np.mean(noise_above[:, j] / 224 ** 2))
        _close(r["curves"]["noise_AUCN"][k], 100 * ref.aucn_ref(noise_above[:, j] / 224 ** 2))

    e = r["embeddings"]
    vn, an = l2_normalize(img, 1), l2_normalize(aud, 1)
    _close(e["alignment"], float(np.mean([vn[i] @ an[i] for i in range(N)])))
    _close(e["magnitude_pair_l2"], float(np.mean([np.linalg.norm(vn[i] - an[i]) for i in range(N)])))
    _close(e["magnitude"], e["magnitude_pair_l2"])
    for score_name, s in (("max_map", scores), ("cosine", vn @ an.T)):
        for k in (1, 5, 10):
            p_i2a, a_i2a = ref.retrieval_ref(s, labels, labels, k)
            p_a2i, a_a2i = ref.retrieval_ref(s.T, labels, labels, k)
            got = r["retrieval"][score_name]
            _close(got["image_to_audio"][f"P@{k}"], 100 * p_i2a)
            _close(got["image_to_audio"][f"A@{k}"], 100 * a_i2a)
            _close(got["audio_to_image"][f"P@{k}"], 100 * p_a2i)
            _close(got["audio_to_image"][f"A@{k}"], 100 * a_a2i)
    assert r["tables"]["table3"]["I2A_P@5"] == r["retrieval"]["max_map"]["image_to_audio"]["P@5"]


def test_calibration_set_and_tau_options():
    _, pos, gt, negs = _inputs()
    calib = {"silence": np.array([0.1, 0.2, 0.3, 0.4, 0.5])}
    r = compute_all(pos, gt, negs, cfg=MetricConfig(sweep_steps=11, tau_negatives=["silence"]),
                    calibration_maxima=calib)
    assert r["thresholds"]["tau_U"] == pytest.approx(0.4) and r["thresholds"]["source"] == "calibration set"
    r2 = compute_all(pos, gt, negs, cfg=MetricConfig(sweep_steps=11, tau_negatives=["noise"], tau_quantile=0.5))
    assert r2["thresholds"]["tau_U"] == pytest.approx(np.median(negs["noise"].reshape(-1, 49).max(axis=1)))
    assert r2["separability"]["kinds"] == ["noise"]


def test_per_sample_lists_and_maps_without_negatives():
    _, pos, gt, _ = _inputs()
    r = compute_all(pos, gt, None, cfg=MetricConfig(sweep_steps=11, tau=0.3, per_sample=True))
    assert len(r["per_sample"]["iou_classic"]) == N and "global" not in r
    assert np.isnan(r["tables"]["table2"]["FLOC"])


@pytest.mark.parametrize("mutate, message", [
    (lambda p, g, n: p.__setitem__((3, 2, 2), np.nan), "pos: map of sample 3 holds NaN"),
    (lambda p, g, n: n["offscreen"].__setitem__((4, 1, 0, 0), np.inf), r"offscreen: map of sample 4 \(seed 1\)"),
])
def test_non_finite_maps_are_a_clear_error(mutate, message):
    _, pos, gt, negs = _inputs()
    mutate(pos, gt, negs)
    with pytest.raises(MetricError, match=message):
        compute_all(pos, gt, negs, cfg=MetricConfig(sweep_steps=11))


def test_shape_errors():
    _, pos, gt, negs = _inputs()
    with pytest.raises(MetricError, match="gt: expected shape"):
        compute_all(pos, gt[:, :100], negs)
    with pytest.raises(MetricError, match="unknown negative kind"):
        compute_all(pos, gt, {"music": negs["silence"]})
    with pytest.raises(MetricError, match="tau_U needs negative maps"):
        compute_all(pos, gt, None)
    with pytest.raises(MetricError, match="labels"):
        compute_all(pos, gt, negs, labels=np.zeros(3))


def test_boxes_to_masks_follow_the_public_drawing():
    # normalised (VGG-SS): clip to [0, 1], x 224, int truncation, union; the corrupt sentinel is clipped to 0
    m = boxes_to_mask(np.array([[0.1, 0.2, 0.5, 0.6], [-2.88e16, 0.9, 0.05, 1.5]]), 224)
    want = np.zeros((224, 224), np.uint8)
    want[int(0.2 * 224):int(0.6 * 224), int(0.1 * 224):int(0.5 * 224)] = 1
    want[int(0.9 * 224):224, 0:int(0.05 * 224)] = 1
    assert np.array_equal(m, want)
    px = masks_from_boxes(np.array([[[10, 20, 30.7, 40], [np.nan] * 4]]), 224, normalized=False)
    assert px[0].sum() == 20 * 20 and px[0, 20:40, 10:30].all()


def test_max_map_scores_brute_force():
    rng = np.random.default_rng(3)
    vis, aud = rng.standard_normal((5, 4, 3, 2)), rng.standard_normal((6, 4))
    got = max_map_scores(vis, aud, chunk=2)
    for i in range(5):
        for j in range(6):
            a = aud[j] / np.linalg.norm(aud[j])
            cos = [vis[i, :, y, x] @ a / np.linalg.norm(vis[i, :, y, x]) for y in range(3) for x in range(2)]
            assert abs(got[i, j] - max(cos)) < 1e-12
