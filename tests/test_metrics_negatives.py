"""eval.metrics.negatives' small helpers by hand: the quartile summaries of map maxima (every key a report shows),
the largest pixel count within an area fraction at its float64 edge, and tau_U with its per-kind quantiles."""
from __future__ import annotations

import math

import numpy as np
import pytest

from eval.metrics import negatives as N


def test_maxima_summary_every_key_by_hand():
    s = N.maxima_summary(np.array([[0.1, 0.4], [0.2, 0.9]]).tolist() + [[0.5, 0.5]])
    # six values 0.1 0.2 0.4 0.5 0.5 0.9: linear quartiles at positions 1.25 and 3.75
    assert s == pytest.approx({"mean": 2.6 / 6, "median": 0.45, "q1": 0.2 + 0.25 * 0.2, "q3": 0.5, "min": 0.1,
                               "max": 0.9})
    assert list(s) == ["mean", "median", "q1", "q3", "min", "max"]
    assert N.maxima_summary(np.array([3, 1], dtype=np.int64))["mean"] == 2.0     # integers are averaged as floats


def test_max_count_within_at_the_float_edge():
    """The largest c with c / pixels <= frac in float64: floor(frac * pixels) can round up to a count just past it
    (frac one ulp below 49673 / 50495), and an exact fraction keeps its count."""
    frac = math.nextafter(49673 / 50495, 0.0)
    assert math.floor(frac * 50495) == 49673 and not 49673 / 50495 <= frac     # the case the loop is there for
    assert N.max_count_within(frac, 50495) == 49672
    assert N.max_count_within(49673 / 50495, 50495) == 49673
    assert [N.max_count_within(f, 10) for f in (0.0, 0.3, 0.7, 1.0)] == [0, 3, 7, 10]
    assert N.max_count_within(0.05, 224 * 224) == 2508                          # 2509 / 50176 > 0.05
    # ... and floor(frac * pixels) can round down past the count: 1 / 50176 * 50176 is 0.9999999999999999
    assert math.floor(1 / 50176 * 50176) == 0 and N.max_count_within(1 / 50176, 50176) == 1
    assert math.floor(29 / 50495 * 50495) == 28 and N.max_count_within(29 / 50495, 50495) == 29


def test_universal_threshold_pooled_and_per_kind():
    maxima = {"silence": np.array([0.1, 0.3]), "noise": np.array([0.2, 0.6, 0.8]), "offscreen": np.array([5.0])}
    u = N.universal_threshold(maxima, ["silence", "noise"])
    # pooled 0.1 0.2 0.3 0.6 0.8: the 75th percentile sits at position 3 -> 0.6
    assert u == {"tau_U": pytest.approx(0.6), "quantile": 0.75, "kinds": ["silence", "noise"], "pooled_maps": 5,
                 "per_kind": {"silence": pytest.approx(0.25), "noise": pytest.approx(0.7)}}
    assert N.universal_threshold(maxima, ["noise"], q=0.5)["tau_U"] == pytest.approx(0.6)
    with pytest.raises(KeyError, match=r"negative kinds \['music'\] are not available"):
        N.universal_threshold(maxima, ["silence", "music"])


def test_per_map_pia_and_aucn_share_by_hand():
    """A map's AUCN share is the trapezoid area of its own step pIA <= 0.05 k: 1 when its first grid point j holds it,
    else 0.05 (20 - j) + 0.025 (the half step up to j). On 10 pixels count c first holds at j = 2c (two grid points
    per count); on 224 x 224 pixels 2508 is within 5% and 2509 is not. Each share is exactly the AUCN of that map
    alone, and the means over maps are pIA and AUCN."""
    counts = np.arange(11)
    above = np.stack([counts, counts[::-1]])                                     # [2, 11]
    got = N.per_map_pia_aucn(above, 10)
    assert got.shape == (2, 11, 2)
    np.testing.assert_array_equal(got[..., 0], above / 10)
    hand = np.array([1.0] + [1.025 - 0.1 * c for c in range(1, 11)])
    np.testing.assert_allclose(got[0, :, 1], hand, rtol=0, atol=1e-14)
    np.testing.assert_allclose(got[1, :, 1], hand[::-1], rtol=0, atol=1e-14)
    for c in counts:
        assert got[0, c, 1] == N.aucn_from_cdf(N.pia_cdf_counts(np.array([c]), 10), 1)   # bit for bit
    assert got[0, :, 1].mean() == pytest.approx(N.aucn_from_cdf(N.pia_cdf_counts(counts, 10), 11), abs=1e-15)
    big = N.per_map_pia_aucn(np.array([0, 2508, 2509, 50175, 50176]), 224 * 224)
    np.testing.assert_allclose(big[:, 1], [1.0, 0.975, 0.925, 0.025, 0.025], rtol=0, atol=1e-14)
    np.testing.assert_array_equal(N.pia_limits(10), [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10])
