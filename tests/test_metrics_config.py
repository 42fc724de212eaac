"""eval.metrics' input checks at their boundaries: every MetricConfig limit accepted at its edge and refused just past
it with its message, and the map checks of compute_all's inputs (one sample, no samples, integer maps, wrong sizes,
non-finite maps, negative kinds)."""
from __future__ import annotations

import numpy as np
import pytest

from eval.metrics import core
from eval.metrics.core import MetricConfig, MetricError

SIZE = "metric config: size and chunk must be positive"
SWEEP = "metric config: need sweep_min < sweep_max and sweep_steps >= 2"
KS = "metric config: retrieval_ks must be positive"
BOOT = "metric config: bootstrap must be >= 0 and confidence in (0, 1)"


@pytest.mark.parametrize("good,bad,message", [
    ({"size": 1}, {"size": 0}, SIZE), ({"chunk": 1}, {"chunk": 0}, SIZE),
    ({"sweep_min": 0.0, "sweep_max": 0.001}, {"sweep_min": 0.5, "sweep_max": 0.5}, SWEEP),
    ({"sweep_steps": 2}, {"sweep_steps": 1}, SWEEP),
    ({"tau_quantile": 0.001}, {"tau_quantile": 0.0}, "metric config: tau_quantile 0.0 is not in (0, 1)"),
    ({"tau_quantile": 0.999}, {"tau_quantile": 1.0}, "metric config: tau_quantile 1.0 is not in (0, 1)"),
    ({"tau_negatives": ["noise"]}, {"tau_negatives": []},
     "metric config: tau_negatives must be a non-empty subset of ['silence', 'noise', 'offscreen']"),
    ({"tau_negatives": ["offscreen", "silence"]}, {"tau_negatives": ["silence", "music"]},
     "metric config: tau_negatives must be a non-empty subset of ['silence', 'noise', 'offscreen']"),
    ({"retrieval_ks": [1]}, {"retrieval_ks": [5, 0]}, KS),
    ({"bootstrap": 0}, {"bootstrap": -1}, BOOT),
    ({"confidence": 0.001}, {"confidence": 0.0}, BOOT), ({"confidence": 0.999}, {"confidence": 1.0}, BOOT),
])
def test_metric_config_limits(good, bad, message):
    MetricConfig(**good).check()
    with pytest.raises(MetricError) as err:
        MetricConfig(**bad).check()
    assert str(err.value) == message


def test_input_checks():
    cfg = MetricConfig(size=4)
    pos = np.zeros((1, 2, 2), np.float32)
    gt = np.zeros((1, 4, 4), bool)
    p, g, negs = core._check_inputs(pos, gt, {"noise": np.ones((1, 2, 2))}, cfg)      # one sample is enough
    assert p.dtype == np.float32 and negs["noise"].shape == (1, 1, 2, 2) and negs["noise"].dtype == np.float32
    cases = [
        ((np.zeros((0, 2, 2), np.float32), np.zeros((0, 4, 4)), None),
         "pos: expected float maps [N, h, w], got float32 (0, 2, 2)"),
        ((np.zeros((1, 2, 2), np.int64), gt, None), "pos: expected float maps [N, h, w], got int64 (1, 2, 2)"),
        ((np.zeros((2, 2), np.float32), gt, None), "pos: expected float maps [N, h, w], got float32 (2, 2)"),
        ((pos, np.zeros((1, 3, 4)), None), "gt: expected shape (1, 4, 4), got (1, 3, 4)"),
        ((np.full((2, 2, 2), np.nan, np.float32), np.zeros((2, 4, 4)), None),
         "pos: map of sample 0 holds NaN or inf (2 such samples)"),
        ((pos, gt, {"music": np.ones((1, 2, 2))}),
         "music: unknown negative kind (expected one of ['silence', 'noise', 'offscreen'])"),
        ((pos, gt, {"silence": np.ones((2, 2, 2))}),
         "silence: expected float maps [1, h, w] or [1, seeds, h, w], got float64 (2, 1, 2, 2)"),
        ((pos, gt, {"silence": np.ones((1, 2, 2), np.int32)}),
         "silence: expected float maps [1, h, w] or [1, seeds, h, w], got int32 (1, 1, 2, 2)"),
        ((pos, gt, {"noise": np.stack([np.ones((1, 2, 2)), np.full((1, 2, 2), np.inf)], axis=1)}),
         "noise: map of sample 0 (seed 1) holds NaN or inf (1 such maps)"),
    ]
    for args, message in cases:
        with pytest.raises(MetricError) as err:
            core._check_inputs(*args, cfg)
        assert str(err.value) == message
