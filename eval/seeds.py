"""Aggregation over training seeds: one metric's values from N runs of one recipe (runs/<name>/seed-<k>/) -> mean,
sample standard deviation, the per-seed values, and for N >= 3 the 95% t interval of the mean over seeds
(mean +- t(0.975, N - 1) s / sqrt(N); the t quantiles are tabulated for N - 1 <= 30, 1.96 beyond); and the
difference of two recipes' means over their seeds with its 95% Welch interval (the Welch-Satterthwaite degrees of
freedom rounded down, which widens the interval: a conservative reading of the table)."""
from __future__ import annotations

import math

# Student's t, 0.975 quantile, for 1..30 degrees of freedom
T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
        2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def aggregate(values: list[float]) -> dict:
    """{"mean", "sd", "values", "lo", "hi"} over the finite values (lo / hi NaN for fewer than 3 of them)."""
    v = [float(x) for x in values if x is not None and math.isfinite(x)]
    nan = float("nan")
    if not v:
        return {"mean": nan, "sd": nan, "values": list(values), "lo": nan, "hi": nan}
    n = len(v)
    mean = sum(v) / n
    sd = math.sqrt(sum((x - mean) ** 2 for x in v) / (n - 1)) if n > 1 else nan
    if n < 3:
        return {"mean": mean, "sd": sd, "values": list(values), "lo": nan, "hi": nan}
    half = _t975(n - 1) * sd / math.sqrt(n)
    return {"mean": mean, "sd": sd, "values": list(values), "lo": mean - half, "hi": mean + half}


def _t975(df: float) -> float:
    k = max(1, math.floor(df))
    return T975[k - 1] if k <= len(T975) else 1.96


def difference(a: list[float], b: list[float]) -> dict:
    """Mean of b minus mean of a over their finite values, with its 95% Welch interval: {"diff", "lo", "hi", "df"}
    (lo / hi / df NaN with fewer than 2 values on either side; a zero spread on both sides gives lo = hi = diff)."""
    va, vb = ([float(x) for x in v if x is not None and math.isfinite(x)] for v in (a, b))
    nan = float("nan")
    if not va or not vb:
        return {"diff": nan, "lo": nan, "hi": nan, "df": nan}
    diff = sum(vb) / len(vb) - sum(va) / len(va)
    if len(va) < 2 or len(vb) < 2:
        return {"diff": diff, "lo": nan, "hi": nan, "df": nan}
    qa, qb = (aggregate(v)["sd"] ** 2 / len(v) for v in (va, vb))
    if qa + qb == 0:
        return {"diff": diff, "lo": diff, "hi": diff, "df": nan}
    df = (qa + qb) ** 2 / (qa ** 2 / (len(va) - 1) + qb ** 2 / (len(vb) - 1))
    half = _t975(df) * math.sqrt(qa + qb)
    return {"diff": diff, "lo": diff - half, "hi": diff + half, "df": df}
