"""Paired comparison of two evaluations of one test set: for every metric of Tables 1-4, B - A with its
paired-bootstrap interval and two-sided p-value (eval.metrics.bootstrap.paired). `eval.report` runs it for every row
of a test set against the first row of that test set when they scored the same samples.

Both stores are scored again under A's EvalConfig (its config.yaml: same thresholds, same bootstrap seed and
count), so resample b draws the same image groups for both and the difference is taken resample by resample; the
stores must hold the same samples in the same order.
"""
from __future__ import annotations

import numpy as np

from eval.errors import EvalError
from eval.metrics import bootstrap as bs
from eval.scoring import score_store
from eval.store import Store


def paired_differences(store_a: Store, store_b: Store, cfg) -> dict:
    """{"confidence", "resamples", "tables": {table: {column: {a, b, diff, lo, hi, undefined, p}}}}."""
    if cfg.metrics.bootstrap < 1:
        raise EvalError("a paired comparison needs bootstrap resamples (metrics.bootstrap >= 1)")
    if not np.array_equal(np.asarray(store_a["keys"]), np.asarray(store_b["keys"])):
        raise EvalError("the two evaluations hold different samples (or in another order): they cannot be paired")
    dist_a, dist_b = {}, {}
    a, b = score_store(store_a, cfg, dist_a), score_store(store_b, cfg, dist_b)
    tables: dict = {}
    for key in dist_a:
        if key == "tau_U" or key not in dist_b:
            continue
        table, col = key
        va, vb = a["metrics"]["tables"][table][col], b["metrics"]["tables"][table][col]
        tables.setdefault(table, {})[col] = bs.paired(dist_a[key], dist_b[key], va, vb, cfg.metrics.confidence)
    return {"confidence": cfg.metrics.confidence, "resamples": cfg.metrics.bootstrap, "tables": tables}
