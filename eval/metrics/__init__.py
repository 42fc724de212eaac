"""Metric core of the evaluator: Numba threshold sweeps and every metric of the paper's Tables 1-4.

Entry point: `compute_all(maps_pos, gt, maps_neg, cfg=MetricConfig(), ...)` -> nested dict (docs/METRICS.md).
Modules: `upsample` (cv2-exact bilinear), `kernels` (one-pass sweeps), `localization`, `negatives`, `embeddings`,
`reference` (the plain-numpy reference the tests and the benchmark compare against), `gt` (boxes -> masks).
"""
from eval.metrics.core import NEGATIVE_KINDS, MetricConfig, MetricError, compute_all

__all__ = ["NEGATIVE_KINDS", "MetricConfig", "MetricError", "compute_all"]
