"""Hand-computed golden values that follow the public evaluation code's semantics (vssl_eval Evaluator_iiou /
eval_utils, SSL-TIE main.test): strict `>` in float64, the float 0.05*k grid with `>=` (pIA: `<=`), NaN handling,
% units and the 100 - pIA convention of FLOC. A 4 x 4 evaluation size keeps every number checkable by hand."""
import numpy as np
import pytest

from eval.metrics import MetricConfig, compute_all
from eval.metrics.embeddings import alignment_magnitude, retrieval
from eval.metrics.localization import auc21, instance_metrics, is3_image_id, success_rate

CFG = dict(size=4, sweep_steps=11)


def _golden_inputs():
    a = (np.arange(16, dtype=np.float32) / 16).reshape(4, 4)     # pixel k holds k/16
    pos = np.stack([a, np.full((4, 4), 0.25, np.float32)])        # sample 1: a constant map
    gt = np.zeros((2, 4, 4), np.uint8)
    gt[0, 3] = 1                                                  # last row: pixels 12..15; sample 1: empty GT
    half = np.zeros((4, 4), np.float32)
    half[:2] = 0.875
    zero = np.zeros((4, 4), np.float32)
    negs = {"silence": np.stack([np.full((4, 4), 0.625, np.float32), zero]),
            "noise": np.stack([half, zero]),
            "offscreen": np.stack([np.stack([zero, np.ones((4, 4), np.float32)]), np.stack([zero, zero])])}
    return pos, gt, negs


def test_golden_localization_and_negative_metrics():
    pos, gt, negs = _golden_inputs()
    r = compute_all(pos, gt, negs, cfg=MetricConfig(**CFG))
    # tau_U = Q3 (linear) of the 8 pooled negative maxima [0, 0, 0, 0, 0, .625, .875, 1] = .625 + .25 * .25
    assert r["thresholds"]["tau_U"] == 0.6875 and r["thresholds"]["pooled_maps"] == 8
    p = r["positive"]
    # classic: median = sorted[8] = 0.5, strict > keeps pixels 9..15 -> IoU 4/7; constant map -> nothing -> NaN
    assert p["classic"]["cIoU"] == pytest.approx(50.0)
    assert p["classic"]["nan_samples"] == 1
    # AUC of [4/7, NaN]: 0.5 for k = 0..11 (0.55 <= 4/7 < 0.6), then 0: 11 * 0.025 + 0.0125
    assert p["classic"]["AUC"] == pytest.approx(28.75)
    # adaptive: sorted[16 - 4] = 0.75 -> 3 pixels, IoU 3/4; empty GT uses g = 8 -> sorted[8] = 0.25 -> NaN
    assert p["adaptive"]["cIoU"] == pytest.approx(50.0)
    assert p["adaptive"]["mean_IoU"] == pytest.approx(37.5)
    # AUC of [0.75, NaN]: 0.5 for k = 0..15 (0.05 * 15 == 0.75), then 0
    assert p["adaptive"]["AUC"] == pytest.approx(100 * (15 * 0.025 + 0.0125))
    # universal: 11/16 == tau is not > tau, pixels 12..15 -> IoU 1; the constant map's NaN becomes 0
    assert p["universal"]["cIoU"] == pytest.approx(50.0)
    assert p["universal"]["AUC"] == pytest.approx(100 * (0.05 * 1.5 / 2 + 19 * 0.025))
    # fixed 0.5: the same pixels as the classic median threshold
    assert p["fixed"]["cIoU"] == pytest.approx(100 * (4 / 7) / 2)
    # SSL-TIE's flavour: the constant map (>= 0) predicts the whole image: IoU 0 / 16 = 0, not NaN
    assert p["classic_ssltie"]["nan_samples"] == 0 and p["classic_ssltie"]["cIoU"] == pytest.approx(50.0)
    n = r["negatives"]
    assert n["silence"]["pIA"] == 0.0 and n["silence"]["AUCN"] == pytest.approx(100.0)
    # noise pIA [0.5, 0]: mean 25 %; CDF 0.5 for k < 10, 1 from k = 10 (0.5 <= 0.05 * 10)
    assert n["noise"]["pIA"] == pytest.approx(25.0)
    assert n["noise"]["AUCN"] == pytest.approx(100 * (9 * 0.025 + 0.05 * 1.5 / 2 + 10 * 0.05))
    # offscreen, 2 seeds: pIA [0, 1, 0, 0]; CDF 0.75 until 1.0 <= 0.05 * 20
    assert n["offscreen"]["pIA"] == pytest.approx(25.0) and n["offscreen"]["maps"] == 4
    assert n["offscreen"]["AUCN"] == pytest.approx(100 * (19 * 0.05 * 0.75 + 0.05 * 1.75 / 2))
    g = r["global"]
    # FLOC = H(cIoU_tau, mean(100 - pIA)) in %: H(50, 83.33) = 62.5
    assert g["FLOC"] == pytest.approx(62.5)
    assert g["FLOC_per_kind"] == pytest.approx({"silence": 200 / 3, "noise": 60.0, "offscreen": 60.0})
    aucn_mean = (100 + n["noise"]["AUCN"] + n["offscreen"]["AUCN"]) / 3
    assert g["FAUC"] == pytest.approx(2 * 51.25 * aucn_mean / (51.25 + aucn_mean))
    # Sep = Q1([0.25, 0.9375]) - Q3(negatives) = 0.421875 - 0.6875
    assert r["separability"]["Sep"] == pytest.approx(-0.265625)
    t2 = r["tables"]["table2"]
    assert (t2["cIoU_Uth"], t2["cIoU_Adap"], t2["pIA_N"], t2["FLOC"]) == pytest.approx((50.0, 50.0, 25.0, 62.5))


def test_fixed_tau_and_float64_comparison():
    pos, gt, negs = _golden_inputs()
    negs["silence"][0] = np.float32(0.1)          # float32(0.1) = 0.10000000149 > 0.1 in float64
    r = compute_all(pos, gt, negs, cfg=MetricConfig(tau=0.1, **CFG))
    assert r["thresholds"]["tau_U"] == 0.1 and r["thresholds"]["source"] == "fixed by the config"
    assert r["negatives"]["silence"]["pIA"] == pytest.approx(50.0)   # a float32 comparison would give 0


def test_public_grid_quirks():
    # 0.05 * 3 = 0.15000000000000002 > 0.15: an IoU of exactly 0.15 fails at the 4th grid point
    assert success_rate(np.array([0.15]), 0.05 * 3) == 0.0
    assert auc21(np.array([0.15])) == pytest.approx(0.125)
    # NaN fails even at t = 0 in the classic lists
    assert success_rate(np.array([np.nan, 1.0]), 0.0) == 0.5


def test_instance_iiou_and_iauc():
    ious = np.array([0.62, 0.43, 0.71, np.nan, 0.9])
    ids = ["a", "a", "b", "c", "c"]
    m = instance_metrics(ious, ids)
    assert m["images"] == 3
    assert m["iIoU"] == pytest.approx(100 / 3)          # a fails (0.43), b passes, c fails (NaN)
    want = 8 * 0.05 * 2 / 3 + 0.05 * 0.5 + 5 * 0.05 / 3 + 0.05 / 6
    assert m["iAUC"] == pytest.approx(100 * want)
    assert is3_image_id("images/dog_cat_0012_dog.jpg") == "dog_cat_0012"


def test_embedding_golden_values():
    v = np.array([[1.0, 0.0], [0.0, 1.0]])
    a = np.array([[2.0, 0.0], [1.0, 0.0]])
    m = alignment_magnitude(v, a)
    assert m["alignment"] == pytest.approx(0.5)
    assert m["magnitude_pair_l2"] == pytest.approx(np.sqrt(2) / 2)
    assert m["magnitude_modality_gap"] == pytest.approx(np.sqrt(0.5))
    r = retrieval(np.array([[1.0, 1.0], [0.0, 0.0]]), [0, 1], ks=(1, 2))
    assert r["image_to_audio"] == {"P@1": 50.0, "A@1": 50.0, "P@2": 50.0, "A@2": 100.0}
    assert r["audio_to_image"]["P@1"] == 50.0 and r["audio_to_image"]["A@2"] == 100.0
    assert retrieval(np.eye(2), [0, 1], ks=(1,), exclude_self=True)["image_to_audio"]["P@1"] == 0.0
