"""The Numba sweep equals the one-threshold-at-a-time numpy reference, edge cases included.

The eight 224 x 224 maps of `_case` are swept once, by one test that checks everything read from that sweep:
`make mutation` runs these tests with the kernels as plain Python (jit disabled), where that sweep takes seconds, and
maps each mutant to the tests that call the mutated function themselves (a shared fixture would hide the calls)."""
import numpy as np
import pytest

from eval.metrics import reference as ref
from eval.metrics.kernels import ThresholdGrid, sweep


def _case():
    rng = np.random.default_rng(7)
    maps = (0.2 + 0.3 * rng.standard_normal((8, 14, 14))).astype(np.float32)
    maps[1] = 0.25                      # constant map
    maps[2, :7] = 0.1                   # a plateau: many tied pixels
    maps[5] = np.round(maps[5] * 10) / 10   # values on the threshold grid itself (ties at thresholds)
    gt = np.zeros((8, 224, 224), dtype=np.uint8)
    gt[0, 50:120, 30:200] = 1
    gt[2] = 1                           # full-image GT (adaptive threshold = minimum)
    gt[3, 10:20, 10:20] = 1
    gt[4, 100:, :50] = 1
    gt[5, 0:224:2, 40:90] = 1
    gt[7, 60:160, 60:160] = 1           # samples 1 and 6: empty GT
    thr = np.unique(np.r_[np.linspace(-1, 1, 201), [0.05 * k for k in range(21)], 0.25, 0.1, 0.7])
    return maps, gt, thr


def _iou(inter, above, g):
    union = g + above - inter
    return inter / union if union > 0 else float("nan")


def test_counts_ranks_and_edge_cases_equal_reference():
    maps, gt, thr = _case()
    res = sweep(maps, ThresholdGrid(thr), gt, ssltie=True)
    # counts at every threshold, including ties, a constant map and empty GT
    above, inter = ref.sweep_ref(maps, gt, thr)
    assert np.array_equal(res.above, above)
    assert np.array_equal(res.inter, inter)
    assert not res.bad.any()
    assert np.array_equal(res.gt_pixels, (gt != 0).reshape(8, -1).sum(axis=1))
    assert np.allclose(res.max_native, maps.reshape(8, -1).max(axis=1))
    # the per-sample thresholds (median, adaptive) and the IoUs at them and of SSL-TIE's flavour
    for i in range(len(maps)):
        up = ref.upsample_ref(maps[i])
        t_med, t_adap = ref.median_threshold_ref(up), ref.adaptive_threshold_ref(up, gt[i])
        assert res.rank_thr[i, 0] == t_med and res.rank_thr[i, 1] == t_adap
        g = res.gt_pixels[i]
        for col, want in ((0, ref.iou_ref(up, gt[i], t_med)), (1, ref.iou_ref(up, gt[i], t_adap)),
                          (2, ref.ssltie_iou_ref(up, gt[i]))):
            got = _iou(res.rank_inter[i, col], res.rank_above[i, col], g)
            assert (np.isnan(got) and np.isnan(want)) or abs(got - want) < 1e-12, (i, col, got, want)
    # constant map: the median equals every pixel, strict > predicts nothing -> empty GT gives NaN (0/0) ...
    assert res.rank_above[1, 0] == 0 and _iou(0, 0, 0) != _iou(0, 0, 0)
    # ... while SSL-TIE's flavour keeps ties at the maximum: a constant map >= 0 predicts the whole image
    assert res.rank_above[1, 2] == 224 * 224
    # full-image GT: the adaptive threshold is the minimum, so every pixel above the minimum is predicted
    up = ref.upsample_ref(maps[2]).astype(np.float64)
    assert res.rank_thr[2, 1] == up.min() and res.rank_above[2, 1] == int((up > up.min()).sum())


def test_negatives_without_gt_and_extra_thresholds():
    maps, gt, thr = _case()
    extra = np.stack([np.full(8, 0.1), np.linspace(-0.5, 0.5, 8)], axis=1)
    res = sweep(maps, ThresholdGrid(thr), None, extra=extra, size=64)
    above, _ = ref.sweep_ref(maps, None, thr, size=64)
    assert np.array_equal(res.above, above) and res.inter.shape == (8, 0)
    assert not res.rank_above.any() and np.isnan(res.rank_thr).all()      # no GT: no ranks
    for i in range(8):
        up = ref.upsample_ref(maps[i], 64)
        for e in range(2):
            assert res.extra_above[i, e] == round(ref.pia_ref(up, extra[i, e]) * 64 * 64)


def test_non_finite_maps_are_flagged_and_the_maps_after_them_still_counted():
    maps, gt, thr = _case()
    maps[3, 4, 4] = np.nan
    maps[6, 0, 0] = np.inf
    small = np.ascontiguousarray(gt[:, ::7, ::7])              # 32 x 32
    res = sweep(maps, ThresholdGrid(thr), small, size=32)
    assert res.bad.tolist() == [False, False, False, True, False, False, True, False]
    good = ~res.bad
    above, inter = ref.sweep_ref(maps[good], small[good], thr, size=32)
    assert np.array_equal(res.above[good], above) and np.array_equal(res.inter[good], inter)
    assert not res.above[res.bad].any() and not res.rank_above[res.bad].any()
    for i in np.flatnonzero(good):
        assert res.rank_thr[i, 0] == ref.median_threshold_ref(ref.upsample_ref(maps[i], 32))


@pytest.mark.parametrize("bad", [[], [0.1, 0.1], [0.2, 0.1], [0.0, np.nan]])
def test_threshold_grid_rejects_bad_thresholds(bad):
    with pytest.raises(ValueError, match="^thresholds must be a non-empty, finite, strictly increasing 1-D array$"):
        ThresholdGrid(np.array(bad, dtype=np.float64))


def _ranks_equal_reference(res, maps, gt, size):
    for i in range(len(maps)):
        up = ref.upsample_ref(maps[i], size).astype(np.float64)
        t_med, t_adap = ref.median_threshold_ref(up), ref.adaptive_threshold_ref(up, gt[i])
        assert res.rank_thr[i].tolist() == [t_med, t_adap], i
        for col, t in ((0, t_med), (1, t_adap)):
            hit = up > t
            assert res.rank_above[i, col] == hit.sum() and res.rank_inter[i, col] == (hit & (gt[i] != 0)).sum()


def test_grids_outside_the_maps_crowded_cells_values_on_thresholds_and_rectangular_maps():
    rng = np.random.default_rng(1)
    square = (3 * rng.standard_normal((3, 7, 7))).astype(np.float32)   # far outside [-1, 1]
    square[0, :3] = 0.0                                                # ties at the crowded thresholds
    wide = (3 * rng.standard_normal((3, 5, 9))).astype(np.float32)     # rows and columns differ
    tall = np.ascontiguousarray(wide.transpose(0, 2, 1))
    steps = np.full((3, 8, 8), 0.125, np.float32)                      # plateaus exactly on thresholds, the top
    steps[:, :, 3:] = 0.375                                            # one over half the image
    steps[1, :, 2:4] = 0.25
    steps[2, :, 1:3] = 0.2578125
    steps[1, 0, :2] = 2.0 ** -40                                       # on the second threshold of a crowded cell
    negative = square - 5.0                                            # SSL-TIE's min-max of an all-negative map
    narrow = (0.3 + 1e-4 * rng.standard_normal((3, 7, 7))).astype(np.float32)   # a range of 1e-4 (float32 ties)
    wide_range = square * 40.0                                         # values far beyond a grid's last threshold
    gt = (rng.random((3, 32, 32)) < 0.4).astype(np.uint8)
    gt[1] = 0
    gt[1, 5, 5] = 1                                                    # one GT pixel
    gt[2] = 0
    gt[2, :4, :4] = 1                                                  # a small GT: the adaptive rank sits high
    grids = [np.array([0.3]),                                          # medians below it, adaptive ranks above
             np.linspace(-0.2, 0.2, 5),
             np.array([-0.5, 0.0, 1e-12, 2e-12, 3e-12, 0.5]),          # more than two thresholds in one cell ...
             np.array([0.0, 1e-12, 2e-12, 3e-12, 0.5]),                # ... in the first cell
             np.array([-0.5, 0.5 - 3e-12, 0.5 - 2e-12, 0.5 - 1e-12, 0.5]),   # ... in the last cell
             np.array([0.125, 0.25, 0.375]),                           # pixels equal to thresholds
             np.array([0.0, 0.25, 0.2578125, 1.0]),                    # two in one cell, pixels on the second
             np.array([0.0, 2.0 ** -40, 2.0 ** -39, 3 * 2.0 ** -40, 0.5]),   # crowded, pixels on the second
             np.array([-0.4, 0.1, 0.5]),                               # lowest and highest of different size
             np.array([0.0, 100.0]),                                   # a span of 100 for two thresholds
             np.array([0.0, 0.03125, 0.0625, 1.0])]                    # crowded first cell; 0.125 is its upper edge
    extra = np.tile([0.125, 0.375, 0.3], (3, 1))                       # pixel values among them
    for maps in (square, wide, tall, steps, negative, narrow, wide_range):
        for thr in grids:
            for g in (None, gt):
                res = sweep(maps, ThresholdGrid(thr), g, size=32, extra=extra, ssltie=True)
                above, inter = ref.sweep_ref(maps, g, thr, size=32)
                assert np.array_equal(res.above, above), (maps.shape, thr)
                assert np.array_equal(res.max_native, maps.reshape(3, -1).max(axis=1))
                ups = [ref.upsample_ref(m, 32).astype(np.float64) for m in maps]
                assert res.extra_above.tolist() == [[round(ref.pia_ref(u, t) * 32 * 32) for t in row]
                                                    for u, row in zip(ups, extra)]
                if g is not None:
                    assert np.array_equal(res.inter, inter) and np.array_equal(res.gt_pixels, gt.reshape(3, -1).sum(1))
                    _ranks_equal_reference(res, maps, gt, 32)
                    for i in range(3):
                        want = ref.ssltie_iou_ref(ups[i].astype(np.float32), gt[i])
                        got = _iou(res.rank_inter[i, 2], res.rank_above[i, 2], res.gt_pixels[i])
                        assert (np.isnan(got) and np.isnan(want)) or abs(got - want) < 1e-12, (i, got, want)


def test_a_single_pixel_in_a_crowded_cell_is_recounted():
    """At the native size (no interpolation) one pixel falls into the one cell holding four thresholds: the lookup
    alone would put it one bucket low."""
    maps = np.full((2, 4, 4), 0.3, np.float32)
    maps[0, 1, 2] = 2.5e-12
    thr = np.array([0.0, 1e-12, 2e-12, 3e-12, 0.5])
    res = sweep(maps, ThresholdGrid(thr), None, size=4)
    above, _ = ref.sweep_ref(maps, None, thr, size=4)
    assert np.array_equal(res.above, above) and res.above[0].tolist() == [16, 16, 16, 15, 0]


@pytest.mark.parametrize("with_gt", [True, False])
def test_sweep_result_has_the_documented_types_and_shapes(with_gt):
    """SweepResult's fields hold the dtypes and shapes its class documents (counts as integers, thresholds and maxima
    as float64), with and without GT, for two 3 x 5 maps, four thresholds and one extra threshold per map."""
    maps = np.arange(30, dtype=np.float64).reshape(2, 3, 5) / 30
    gt = np.zeros((2, 16, 16), dtype=np.uint8)
    gt[:, 4:9, 2:12] = 1
    res = sweep(maps, ThresholdGrid(np.array([0.1, 0.3, 0.5, 0.7])), gt if with_gt else None, size=16,
                extra=np.array([[0.2], [0.6]]))
    expected = {"above": (np.int32, (2, 4)), "inter": (np.int32, (2, 4 if with_gt else 0)),
                "gt_pixels": (np.int64, (2,)), "rank_thr": (np.float64, (2, 2)), "rank_above": (np.int64, (2, 3)),
                "rank_inter": (np.int64, (2, 3)), "extra_above": (np.int64, (2, 1)),
                "max_native": (np.float64, (2,)), "bad": (np.bool_, (2,))}
    assert {f: (getattr(res, f).dtype.type, getattr(res, f).shape) for f in expected} == expected
    assert res.gt_pixels.tolist() == ([50, 50] if with_gt else [0, 0])
    np.testing.assert_array_equal(res.max_native, np.float32([14 / 30, 29 / 30]))   # the maps are read as float32
