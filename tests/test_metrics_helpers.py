"""The metrics' helpers and compute_all's edges by hand: percentile intervals and the paired test (every key, both
sides), the tau band, the nearest grid threshold on ties, group ids and resampling blocks, bootstrap distributions
without columns and of float32 maxima, box masks (padding first, parts outside the image, float32 boxes, the
defaults), float32 IoUs against the float64 grid, IoUs from counts, unit vectors and the pooled visual embedding,
retrieval ties and self-exclusion (with their Table 3 intervals), IS3 image ids, GT masks of any type, the progress
bars, the harmonic mean, upsampling's defaults; and in compute_all: missing inputs (NaN columns without intervals),
0 / 0 scores (NaN, quietly), a fixed or calibrated tau (not resampled), every input error by its message."""
from __future__ import annotations

import re
import warnings

import numpy as np
import pytest

from eval.metrics import (MetricConfig, MetricError, bootstrap as bs, compute_all, core, embeddings as emb,
                          localization as loc, negatives as neg, reference as ref)
from eval.metrics.gt import boxes_to_mask, masks_from_boxes
from eval.metrics.kernels import ThresholdGrid, sweep
from eval.metrics.upsample import upsample


def test_interval_every_key_by_hand():
    values = np.r_[np.arange(1.0, 11.0), np.nan]
    # 1..10: linear percentiles 10 and 90 at positions 0.9 and 8.1
    assert bs.interval(values, 0.8) == pytest.approx({"lo": 1.9, "hi": 9.1, "undefined": 1})
    assert bs.interval(np.array([5.0, np.nan]), 0.95) == {"lo": 5.0, "hi": 5.0, "undefined": 1}
    empty = bs.interval(np.full(3, np.nan), 0.95)
    assert list(empty) == ["lo", "hi", "undefined"] and np.isnan(empty["lo"]) and np.isnan(empty["hi"])
    assert empty["undefined"] == 3


def test_paired_every_key_by_hand():
    a = np.array([0.0, 1.0, 2.0, 3.0, 0.0])
    b = np.array([1.0, 3.0, 5.0, 7.0, np.nan])          # differences 1 2 3 4 and one undefined
    got = bs.paired(a, b, 10.0, 12.5, 0.5)
    # P(d <= 0) = (0 + 1) / 5, P(d >= 0) = (4 + 1) / 5: p = 2 * 0.2; the 25th and 75th percentiles 1.75, 3.25
    assert got == pytest.approx({"a": 10.0, "b": 12.5, "diff": 2.5, "lo": 1.75, "hi": 3.25, "undefined": 1, "p": 0.4})
    assert list(got) == ["a", "b", "diff", "lo", "hi", "undefined", "p"]
    mixed = bs.paired(np.zeros(4), np.array([-1.0, 0.0, 1.0, 2.0]), 0.0, 0.0, 0.5)
    assert mixed["p"] == 1.0                               # 2 * min(3/5, 4/5) capped at 1
    worse = bs.paired(np.zeros(5), np.array([-1.0, -2.0, -3.0, -4.0, np.nan]), 0.0, -1.0, 0.5)
    assert worse["p"] == pytest.approx(0.4)                # P(d >= 0) = (0 + 1) / 5 is the smaller side
    none = bs.paired(np.zeros(2), np.full(2, np.nan), 1.0, 2.0, 0.95)
    assert set(none) == {"a", "b", "diff", "lo", "hi", "undefined", "p"} and np.isnan(none["p"])
    assert none["diff"] == 1.0 and none["undefined"] == 2


def test_tau_band_and_nearest_threshold():
    assert bs.tau_band(np.array([0.3, 0.3, np.nan])).size == 0            # no spread: no band
    assert bs.tau_band(np.full(2, np.nan)).size == 0
    band = bs.tau_band(np.array([np.nan, 0.3, 0.1, 0.2]))
    assert band.size == bs.BAND and band[0] == 0.1 and band[-1] == 0.3 and np.all(np.diff(band) > 0)
    thr = np.array([0.0, 1.0, 2.0, 4.0])
    # below the grid, a tie (lower wins), nearer the upper, a tie between 2 and 4, nearer 4, above the grid
    got = bs.nearest(thr, np.array([-5.0, 0.5, 0.6, 3.0, 3.1, 9.0, 0.0, 4.0]))
    assert got.tolist() == [0, 0, 1, 2, 3, 3, 0, 3]


def test_group_ids_and_resampling_blocks():
    ids = bs.group_ids(["b", "a", "b", "c", "a"], 5)
    assert ids.tolist() == [0, 1, 0, 2, 1] and ids.dtype == np.int64                 # order of first appearance
    assert bs.group_ids(None, 3).tolist() == [0, 1, 2]
    res = bs.Resampling([2, 0, 2, 1, 0], 300, 4)
    assert res.num_groups == 3 and res.members.tolist() == [1, 4, 3, 0, 2] and res.offsets.tolist() == [0, 2, 3, 5]
    blocks = list(res.blocks())
    assert [(s, d.shape) for s, d in blocks] == [(0, (bs.BLOCK, 3)), (bs.BLOCK, (300 - bs.BLOCK, 3))]
    draws = np.concatenate([d for _, d in blocks])
    assert draws.dtype == np.int64 and set(np.unique(draws).tolist()) == {0, 1, 2}    # both ends of the range
    assert bs.Resampling(np.zeros(0, np.int64), 5).num_groups == 0
    # members keep sample order within each group (sums over a group run in one fixed order), also past 16 samples
    many = bs.Resampling(np.arange(50) % 3, 10)
    assert np.array_equal(many.members, np.concatenate([np.arange(g, 50, 3) for g in range(3)]))


def test_boxes_to_mask_padding_outside_parts_and_defaults():
    # a padding row first (the boxes after it still count), a box starting left of the image, one past its end
    boxes = np.array([[np.nan] * 4, [-0.05, 0.5, 0.1, 0.75], [0.9, 0.0, 1.5, 0.25]])
    m = boxes_to_mask(boxes)
    want = np.zeros((224, 224), np.uint8)
    want[112:168, 0:22] = 1
    want[0:56, 201:224] = 1
    assert m.dtype == np.uint8 and m.shape == (224, 224) and np.array_equal(m, want)
    # float32 boxes are read in float64: float32(9 / 224) lies below 9 / 224, at pixel 8 (float32 arithmetic says 9)
    v = np.float32(0.04017857)
    assert int(v * 224) == 9 and int(float(v) * 224) == 8
    want = np.zeros((224, 224), np.uint8)
    want[8:112, 8:112] = 1
    assert np.array_equal(boxes_to_mask(np.array([[v, v, 0.5, 0.5]], np.float32)), want)
    px = boxes_to_mask(np.array([[0, 0, 3.9, 2.5], [6, 5, 300, 8]]), 8, normalized=False)
    want = np.zeros((8, 8), np.uint8)
    want[0:2, 0:3] = 1                                     # truncated, starting at pixel 0
    want[5:8, 6:8] = 1                                     # clipped to the image
    assert np.array_equal(px, want)
    many = masks_from_boxes(np.stack([boxes, boxes[[1, 0, 2]]]))
    assert many.shape == (2, 224, 224) and many.dtype == np.uint8 and np.array_equal(many[0], many[1])
    assert np.array_equal(many[0], m)
    empty = masks_from_boxes(np.zeros((0, 2, 4)), 16)
    assert empty.shape == (0, 16, 16) and empty.dtype == np.uint8
    with pytest.raises(ValueError, match=r"boxes must have shape \[N, B, 4\], got \(2, 4\)"):
        masks_from_boxes(np.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"got \(1, 2, 3\)"):
        masks_from_boxes(np.zeros((1, 2, 3)))


def test_float32_ious_are_compared_with_the_float64_grid():
    # 0.05 * 7 = 0.35000000000000003 in float64; float32(0.35) is below it, although it equals float32(0.35000000000000003)
    ious = np.array([0.35, 0.9], dtype=np.float32)
    t = 0.05 * 7
    assert loc.success_rate(ious, t) == 0.5
    assert loc.success_rate(np.array([0.5, 0.7, 0.2, 0.6]).reshape(2, 2)) .tolist() == [0.5, 1.0]   # axis 0 default
    per = loc.auc21_per_sample(ious)
    # IoU 0.35 (float32, below 0.35 in float64) succeeds at 0, 0.05, ..., 0.3: area 0.3 + half a step; float32 0.9 at 0..0.85
    assert per[0] == pytest.approx(0.325) and per[1] == pytest.approx(0.875)
    assert loc.auc21(ious) == pytest.approx(per.mean())
    # float64 0.35 is below 0.05 * 7 too: (0.325 + 0.025) / 2 and (0.925 + 1) / 2, along axis 1
    assert loc.auc21(np.array([[0.35, 0.9], [0.0, 1.0]]).T, axis=1).tolist() == pytest.approx([0.175, 0.9625])
    # one image per sample: iAUC is the mean of the per-sample areas, with the same float64 comparison
    assert loc.instance_metrics(ious, ["a", "b"]) == pytest.approx({"iIoU": 50.0, "iAUC": 60.0, "images": 2})
    s = loc.summary(ious, mean_is_ciou=True)
    assert s == pytest.approx({"cIoU": 100 * (0.35 + 0.9) / 2, "AUC": 100 * per.mean(), "success50": 50.0,
                               "nan_samples": 0}, rel=1e-6)


def test_unit_vectors_and_the_pooled_visual_embedding():
    assert emb.l2_normalize(np.array([[3, 4], [0, 0]])).tolist() == [[0.6, 0.8], [0.0, 0.0]]   # zero stays zero
    assert emb.l2_normalize(np.array([[3.0, 0.0], [4.0, 0.0]]), axis=0).tolist() == [[0.6, 0.0], [0.8, 0.0]]
    # two images, 2 channels, 1 x 2 pixels: per-pixel unit vectors, their mean, normalised again
    vis = np.array([[[[3.0, 0.0]], [[4.0, 2.0]]],          # pixels (3, 4) and (0, 2): (0.6, 0.8), (0, 1)
                    [[[1.0, 0.0]], [[0.0, 0.0]]]])         # pixels (1, 0) and (0, 0): (1, 0), (0, 0)
    got = emb.pooled_visual_embedding(vis)
    assert got == pytest.approx(np.array([[0.3, 0.9] / np.sqrt(0.9), [1.0, 0.0]]))
    am = emb.alignment_magnitude(np.array([[2.0, 0.0], [0.0, 1.0]]), np.array([[0.0, 3.0], [0.0, 5.0]]))
    # unit rows (1, 0), (0, 1) against (0, 1), (0, 1): cosines 0 and 1; distances sqrt 2 and 0; gap |(.5,.5)-(0,1)|
    assert am == pytest.approx({"alignment": 0.5, "magnitude_pair_l2": np.sqrt(2) / 2,
                                "magnitude_modality_gap": np.sqrt(0.5)})


def test_retrieval_ties_keep_the_gallery_order_and_self_exclusion():
    scores = np.array([[1.0, 1.0, 1.0], [0.0, 2.0, 2.0], [5.0, 5.0, 1.0]])
    labels = np.array([0, 1, 0])
    got = emb.retrieval_per_query(scores, labels, ks=(1, 2))
    # ties are broken by the lower gallery index: query 0 ranks 0, 1, 2; query 1 ranks 1, 2, 0; query 2 ranks 0, 1, 2
    assert got["image_to_audio", "P@1"].tolist() == [100.0, 100.0, 100.0]
    assert got["image_to_audio", "P@2"].tolist() == [50.0, 50.0, 50.0]
    # columns as queries: audio 0 ranks images 2, 0, 1; audio 1 ranks 2, 1, 0; audio 2 ranks 1, 0, 2
    assert got["audio_to_image", "P@1"].tolist() == [100.0, 0.0, 0.0]
    assert got["audio_to_image", "A@2"].tolist() == [100.0, 100.0, 100.0]
    own = emb.retrieval_per_query(scores, labels, ks=(1,), exclude_self=True)
    # without the diagonal: query 0 ranks 1, 2; query 1 ranks 2, 0; query 2 ranks 0, 1
    assert own["image_to_audio", "P@1"].tolist() == [0.0, 0.0, 100.0]
    assert emb.retrieval_per_query(scores, labels, ks=(1,))["image_to_audio", "A@1"].dtype == np.float64


@pytest.mark.parametrize("dtype", [np.bool_, np.int64, np.float32])
def test_sweep_reads_any_gt_type_as_nonzero_is_object(dtype):
    rng = np.random.default_rng(2)
    maps = rng.standard_normal((2, 5, 5)).astype(np.float32)
    gt = rng.integers(0, 3, (2, 16, 16))                   # 0 background; 1 and 2 object
    grid = ThresholdGrid(np.linspace(-1, 1, 9))
    want = sweep(maps, grid, (gt != 0).astype(np.uint8), size=16)
    got = sweep(maps, grid, gt.astype(dtype), size=16)
    assert not got.rank_above[:, 2].any() and got.extra_above.shape == (2, 0)     # no SSL-TIE flavour, no extras
    assert np.array_equal(got.inter, want.inter) and np.array_equal(got.gt_pixels, want.gt_pixels)
    assert np.array_equal(got.rank_above, want.rank_above) and want.gt_pixels.tolist() == [
        int((gt[0] != 0).sum()), int((gt[1] != 0).sum())]


def test_compute_all_progress_bars_name_each_pass(monkeypatch):
    """One bar per pass over the chunks, named after the maps, counted in chunks, shown only with `progress` and
    cleared when the pass ends (the bars are recorded, not drawn: `make mutation` runs tests in forked children)."""
    bars = []

    def record(iterable, **kwargs):
        bars.append((list(iterable), kwargs))
        return bars[-1][0]
    monkeypatch.setattr(core, "tqdm", record)
    rng = np.random.default_rng(0)
    pos = rng.standard_normal((3, 4, 4)).astype(np.float32)
    gt = np.ones((3, 8, 8), np.uint8)
    negs = {"silence": rng.standard_normal((3, 4, 4)).astype(np.float32)}
    for progress in (True, False):
        bars.clear()
        compute_all(pos, gt, negs, cfg=MetricConfig(size=8, sweep_steps=5, bootstrap=0, chunk=2, progress=progress))
        assert bars == [([0, 2], {"desc": "positive maps", "unit": "chunk", "disable": not progress, "leave": False}),
                        ([0, 2], {"desc": "silence maps", "unit": "chunk", "disable": not progress, "leave": False})]


def _small(n=3, size=8):
    rng = np.random.default_rng(1)
    return rng.standard_normal((n, 4, 4)).astype(np.float32), (rng.random((n, size, size)) < 0.5).astype(np.uint8)


def test_missing_inputs_leave_their_table_columns_nan_and_without_intervals():
    pos, gt = _small()
    with warnings.catch_warnings():
        warnings.simplefilter("error")                     # and nothing is averaged over an empty list
        r = compute_all(pos, gt, None, cfg=MetricConfig(size=8, sweep_steps=5, tau=0.2, bootstrap=20))
    t = r["tables"]
    nan_cols = {"table1": ["Magnitude", "Alignment", "Separability"],
                "table2": ["pIA_S", "AUCN_S", "pIA_N", "AUCN_N", "pIA_O", "AUCN_O", "FLOC", "FAUC"],
                "table4": ["pIA_S", "pIA_N", "pIA_O", "FLOC", "Sep"],
                "table3": [f"{d}_{m}@{k}" for d in ("I2A", "A2I") for k in (1, 5, 10) for m in ("P", "A")]}
    for table, cols in nan_cols.items():
        for c in cols:
            assert isinstance(t[table][c], float) and np.isnan(t[table][c]), (table, c)
    assert set(r["intervals"]["tables"]["table2"]) == {"cIoU_Uth", "cIoU_Adap", "AUC_Uth", "AUC_Adap"}
    assert r["intervals"]["tables"]["table1"] == {} and r["intervals"]["tables"]["table3"] == {}
    # the grid: -1 -0.5 0 0.5 1 and 0.05 k (holding 0, 0.2 = tau, 0.5 = fixed, 1): 23 thresholds
    assert r["thresholds"] == {"tau_U": 0.2, "source": "fixed by the config", "fixed": 0.5, "grid_points": 23}
    assert "retrieval" not in r and "embeddings" not in r and "separability" not in r


def test_embedding_and_retrieval_input_errors_name_the_array():
    pos, gt = _small()
    rng = np.random.default_rng(2)
    e = rng.standard_normal((3, 4))
    bad = e.copy()
    bad[1, 2] = np.nan
    cfg = MetricConfig(size=8, sweep_steps=5, tau=0.2, bootstrap=0)
    cases = [({"img_emb": e}, "^embeddings: give both img_emb and aud_emb, or neither$"),
             ({"img_emb": e, "aud_emb": e[:2]}, r"embeddings: expected img_emb and aud_emb \[3, C\], got \(3, 4\) and \(2, 4\)"),
             ({"img_emb": e[:, :, None], "aud_emb": e[:, :, None]}, r"expected img_emb and aud_emb \[3, C\], got \(3, 4, 1\)"),
             ({"img_emb": e[:2], "aud_emb": e[:2]}, r"\[3, C\], got \(2, 4\) and \(2, 4\)"),
             ({"img_emb": bad, "aud_emb": e}, r"^img_emb: map of sample 1 holds NaN or inf \(1 such samples\)$"),
             ({"img_emb": e, "aud_emb": bad}, r"^aud_emb: map of sample 1 holds NaN"),
             ({"retrieval_scores": np.zeros((3, 2))}, r"^retrieval_scores: expected \[3, 3\], got \(3, 2\)$"),
             ({"retrieval_scores": np.full((3, 3), np.inf)}, r"^retrieval_scores: map of sample 0 holds NaN or inf"),
             ({"labels": np.zeros((3, 1))}, r"^labels: expected 3 labels, got shape \(3, 1\)$"),
             ({"image_ids": ["a", "b"]}, r"^image_ids: expected 3 ids, got shape \(2,\)$")]
    for kwargs, message in cases:
        with pytest.raises(MetricError) as err:
            compute_all(pos, gt, None, cfg=cfg, **kwargs)
        assert re.search(message, str(err.value)), (str(err.value), message)


def test_retrieval_without_self_and_its_intervals():
    pos, gt = _small(4)
    rng = np.random.default_rng(3)
    img = rng.standard_normal((4, 3))
    aud = img + 0.01 * rng.standard_normal((4, 3))          # each image's own audio is its best match
    labels = np.array([0, 1, 0, 1])
    cfg = MetricConfig(size=8, sweep_steps=5, tau=0.2, bootstrap=30, retrieval_exclude_self=True,
                       retrieval_score="cosine")
    r = compute_all(pos, gt, None, cfg=cfg, img_emb=img, aud_emb=aud, labels=labels)
    cos = emb.l2_normalize(img, 1) @ emb.l2_normalize(aud, 1).T
    want = emb.retrieval(cos, labels, exclude_self=True)
    assert r["retrieval"]["cosine"] == want and r["retrieval"]["table_score"] == "cosine"
    assert want != emb.retrieval(cos, labels)                 # leaving self out changes these numbers
    assert r["tables"]["table3"]["I2A_P@1"] == want["image_to_audio"]["P@1"]
    assert set(r["intervals"]["tables"]["table3"]) == set(r["tables"]["table3"])
    # each resample averages the per-query numbers (without self) of the queries it drew
    per_query = emb.retrieval_per_query(cos, labels, exclude_self=True)[("image_to_audio", "P@1")]
    draws = np.concatenate([d for _, d in bs.Resampling(np.arange(4), 30, 0).blocks()])
    want_interval = bs.interval(np.array([per_query[d].mean() for d in draws]), 0.95)
    assert r["intervals"]["tables"]["table3"]["I2A_P@1"] == pytest.approx(want_interval)
    r2 = compute_all(pos, gt, None, cfg=MetricConfig(size=8, sweep_steps=5, tau=0.2, bootstrap=0,
                                                      retrieval_score="max_map"), img_emb=img, aud_emb=aud,
                     labels=labels)
    assert r2["retrieval"]["table_score"] is None and np.isnan(r2["tables"]["table3"]["I2A_P@1"])


def test_zero_over_zero_scores_are_nan_quietly_and_have_no_interval():
    """Empty GT everywhere (every IoU 0) and tau below every negative pixel (every pIA 100%): FLOC is 0 / 0 in the
    point value, the curves and every resample; it is NaN, without a RuntimeWarning, and has no interval."""
    pos, _ = _small()
    gt = np.zeros((3, 8, 8), np.uint8)
    negs = {"noise": np.zeros((3, 2, 4, 4), np.float32)}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = compute_all(pos, gt, negs, cfg=MetricConfig(size=8, sweep_steps=5, tau=-5.0, bootstrap=20))
    assert r["negatives"]["noise"]["pIA"] == 100.0 and r["positive"]["universal"]["cIoU"] == 0.0
    assert np.isnan(r["global"]["FLOC"]) and np.isnan(r["tables"]["table2"]["FLOC"])
    assert np.isnan(r["curves"]["FLOC"][0])
    assert "FLOC" not in r["intervals"]["tables"]["table2"] and "pIA_N" in r["intervals"]["tables"]["table2"]
    assert r["intervals"]["tau_U"] == {"lo": -5.0, "hi": -5.0, "undefined": 0}     # a fixed tau is not resampled


def test_tau_from_a_calibration_set_is_not_resampled_and_its_absence_is_a_clear_error():
    pos, gt = _small()
    negs = {"noise": np.random.default_rng(4).standard_normal((3, 4, 4)).astype(np.float32)}
    calib = {"noise": np.array([0.1, 0.2, 0.3, 0.4, 0.5])}
    r = compute_all(pos, gt, negs, cfg=MetricConfig(size=8, sweep_steps=5, bootstrap=20, tau_negatives=["noise"]),
                    calibration_maxima=calib)
    assert r["thresholds"]["tau_U"] == pytest.approx(0.4) and r["thresholds"]["source"] == "calibration set"
    assert r["intervals"]["tau_U"] == {"lo": pytest.approx(0.4), "hi": pytest.approx(0.4), "undefined": 0}
    with pytest.raises(MetricError) as err:
        compute_all(pos, gt, None, cfg=MetricConfig(size=8, sweep_steps=5, bootstrap=0))
    assert str(err.value) == ("tau_U needs negative maps (or calibration maxima) of the kinds "
                              "['silence', 'noise', 'offscreen'], or a fixed tau")


def test_harmonic_mean_by_hand():
    assert neg.harmonic(0.25, 0.75) == 0.375                # a + b = 1
    assert neg.harmonic(2.0, 6.0) == 3.0
    assert np.isnan(neg.harmonic(0.0, 0.0)) and neg.harmonic(0.0, 5.0) == 0.0


def test_upsample_defaults_to_224_and_rounds_inputs_to_float32():
    rng = np.random.default_rng(6)
    maps = rng.standard_normal((2, 5, 5))                  # float64
    got = upsample(maps)
    assert got.shape == (2, 224, 224) and got.dtype == np.float32
    assert np.array_equal(got, upsample(maps.astype(np.float32), 224))


def test_retrieval_ties_in_a_long_row_and_integer_scores():
    """Twenty gallery items scoring 1, 2, 1, 2, ...: ranks keep the gallery order among ties (an unstable sort of
    more than 16 items does not), as the reference's (-score, index) order."""
    scores = np.tile([1.0, 2.0], (20, 10))
    labels = np.zeros(20, np.int64)
    labels[7] = 1
    got = emb.retrieval_per_query(scores, labels, ks=(3,))
    want = [ref.retrieval_ref(scores[i:i + 1], labels[i:i + 1], labels, 3)[0] for i in range(20)]
    assert got["image_to_audio", "P@3"].tolist() == pytest.approx([100 * w for w in want])
    assert got["image_to_audio", "P@3"][0] == 100.0                  # items 1, 3, 5
    ints = emb.retrieval_per_query(np.arange(9).reshape(3, 3), [0, 1, 0], ks=(1,), exclude_self=True)
    # without the diagonal rows 0, 1, 2 rank items 2, 2, 1 first: labels 0, 0, 1 against 0, 1, 0
    assert ints["image_to_audio", "P@1"].tolist() == [100.0, 0.0, 0.0]


def test_is3_image_ids_drop_folders_extension_and_the_target_part():
    assert loc.is3_image_id("is3/images/bird_0012_2.jpg") == "bird_0012"
    assert loc.is3_image_id("bird_0012_10") == "bird_0012"
    assert loc.is3_image_id("a/b/c/x_1.jpg") == "x"
    assert loc.is3_image_id("a/x.jpg_y_1") == "x_y"       # the extension is removed before the target part is


def test_iou_from_counts_by_hand():
    # a one-pixel GT hit exactly (union 1), missed by an empty prediction, an empty GT and prediction (0 / 0), and
    # counts broadcast against per-row GT sizes
    got = loc.iou_from_counts(np.array([1, 0, 0, 3]), np.array([1, 0, 0, 5]), np.array([1, 1, 0, 4]))
    assert got[:2].tolist() == [1.0, 0.0] and np.isnan(got[2]) and got[3] == 3 / 6
    rows = loc.iou_from_counts(np.array([[2, 1], [0, 0]], np.int32), np.array([[4, 2], [3, 0]], np.int32),
                               np.array([[2], [0]]))
    assert np.allclose(rows, [[0.5, 1 / 3], [0.0, np.nan]], equal_nan=True)


def test_unit_vectors_of_float32_embeddings_are_computed_in_float64():
    x = np.random.default_rng(8).standard_normal((4, 16)).astype(np.float32)
    got = emb.l2_normalize(x)
    want = x.astype(np.float64) / np.linalg.norm(x.astype(np.float64), axis=1, keepdims=True)
    assert got.dtype == np.float64 and np.array_equal(got, want)


def test_bootstrap_distribution_without_columns_and_with_float32_maxima():
    rng = np.random.default_rng(9)
    pos_max = np.array([0.001, 0.9, 0.03, 0.7, 0.0002, 0.45]) + rng.normal(0, 1e-4, 6)   # far apart (b - a inexact)
    neg = {"noise": rng.normal(0.4, 0.1, (6, 2))}
    res = bs.Resampling(np.arange(6), 50, 1)
    thr = np.linspace(-1, 1, 5)
    ks = np.unique(bs.nearest(thr, bs.tau_distribution(res, pos_max, neg, ["noise"], ["noise"], 0.75)[0]))
    vals = bs.SampleValues(pos_max=pos_max, neg_max=neg, tau_kinds=["noise"], sep_kinds=["noise"], tau_quantile=0.75,
                           linear={}, at_tau={}, ks=ks, thresholds=thr, fixed_tau=None)
    got, want = bs.distribution(res, vals), bs.reference_distribution(res, vals)
    assert set(got) == {"tau_U", "Q1_pos", "Q3_neg"} == set(want)
    for col in want:
        np.testing.assert_array_equal(got[col], want[col], err_msg=col)
    # float32 maxima are resampled as float64 numbers
    q32 = bs.tau_distribution(res, pos_max.astype(np.float32), neg, ["noise"], ["noise"], 0.75)
    q64 = bs.tau_distribution(res, pos_max.astype(np.float32).astype(np.float64), neg, ["noise"], ["noise"], 0.75)
    for a, b in zip(q32, q64):
        np.testing.assert_array_equal(a, b)


def test_float_inputs_are_read_in_the_documented_precision():
    """Maps are evaluated in float32 (as the public code receives them from torch); maxima, quantiles and IoU lists
    in float64: float32 inputs give what their float64 values give."""
    rng = np.random.default_rng(12)
    maps64 = rng.standard_normal((2, 5, 5))
    grid = ThresholdGrid(np.linspace(-1, 1, 9))
    a, b = sweep(maps64, grid, size=16), sweep(maps64.astype(np.float32), grid, size=16)
    assert np.array_equal(a.above, b.above) and np.array_equal(a.max_native, b.max_native)
    assert np.array_equal(ref.upsample_ref(maps64[0], 16), ref.upsample_ref(maps64[0].astype(np.float32), 16))
    x32 = rng.random(7).astype(np.float32)
    x64 = x32.astype(np.float64)
    assert neg.maxima_summary(x32) == neg.maxima_summary(x64)
    assert neg.quantile(x32, 0.3) == neg.quantile(x64, 0.3) and isinstance(neg.quantile(x32, 0.3), float)
    assert loc.summary(x32, mean_is_ciou=True) == loc.summary(x64, mean_is_ciou=True)
    assert loc.summary(x32, mean_is_ciou=False) == loc.summary(x64, mean_is_ciou=False)


def test_the_reference_ious_with_a_union_of_one_pixel():
    pred = np.array([[0.0, 0.0], [0.0, 1.0]], np.float32)
    gt = np.array([[0, 0], [0, 1]], np.uint8)
    assert ref.iou_ref(pred, gt, 0.5) == 1.0                # predicted = GT = one pixel
    assert ref.ssltie_iou_ref(pred, gt) == 1.0              # the maximum alone is above the median 0
