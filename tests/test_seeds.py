"""eval.seeds: the aggregate over training seeds and the Welch difference of two recipes, against hand-computed
values."""
from __future__ import annotations

import math

import pytest

from eval.seeds import aggregate, difference


def test_aggregate_mean_sd_and_t_interval():
    agg = aggregate([1.0, 2.0, 3.0])
    half = 4.303 / math.sqrt(3)                 # t(0.975, 2) * sd 1 / sqrt(3)
    assert (agg["mean"], agg["sd"]) == (2.0, 1.0)
    assert agg["lo"] == pytest.approx(2 - half) and agg["hi"] == pytest.approx(2 + half)
    two = aggregate([1.0, float("nan"), 4.0])   # NaN left out; two values: no interval
    assert two["mean"] == 2.5 and two["sd"] == pytest.approx(math.sqrt(4.5)) and math.isnan(two["lo"])
    assert two["values"][0] == 1.0 and math.isnan(two["values"][1])
    assert math.isnan(aggregate([None, float("nan")])["mean"])


def test_welch_difference_hand_computed():
    # means 2 and 6, variances 1 and 4: se^2 = 1/3 + 4/3 = 5/3, df = (5/3)^2 / ((1/3)^2/2 + (4/3)^2/2) = 50/17,
    # rounded down to 2: t = 4.303
    d = difference([1.0, 2.0, 3.0], [4.0, 6.0, 8.0])
    half = 4.303 * math.sqrt(5 / 3)
    assert d["diff"] == 4.0 and d["df"] == pytest.approx(50 / 17)
    assert d["lo"] == pytest.approx(4 - half) and d["hi"] == pytest.approx(4 + half)
    assert d["lo"] < 0 < d["hi"]                 # 3 seeds a side: a difference of 4 sd-units is not enough here
    # reversed order: the same interval mirrored
    r = difference([4.0, 6.0, 8.0], [1.0, 2.0, 3.0])
    assert (r["diff"], r["lo"], r["hi"]) == pytest.approx((-4, -4 - half, -4 + half))


def test_welch_difference_edges():
    # one side without spread: df = n - 1 of the other side (2 here)
    d = difference([1.0, 1.0, 1.0], [2.0, 3.0, 4.0])
    assert d["df"] == pytest.approx(2.0) and d["hi"] - d["diff"] == pytest.approx(4.303 / math.sqrt(3))
    # many seeds: df beyond the table uses 1.96
    a, b = [float(i % 2) for i in range(40)], [float(i % 2) + 1 for i in range(40)]
    d = difference(a, b)
    assert d["diff"] == pytest.approx(1.0) and d["df"] > 30
    assert d["hi"] - d["diff"] == pytest.approx(1.96 * math.sqrt(2 * aggregate(a)["sd"] ** 2 / 40))
    same = difference([1.0, 1.0], [2.0, 2.0])   # no spread at all: the interval is the point
    assert (same["diff"], same["lo"], same["hi"]) == (1.0, 1.0, 1.0)
    one = difference([1.0], [2.0, 3.0])         # one seed: a difference, no interval
    assert one["diff"] == 1.5 and math.isnan(one["lo"]) and math.isnan(one["hi"])
    assert math.isnan(difference([], [1.0])["diff"])
    nan = difference([1.0, float("nan"), 3.0], [3.0, 5.0])      # NaN seeds left out
    assert nan["diff"] == 2.0 and nan["df"] == pytest.approx(2.0)
