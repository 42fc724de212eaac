"""Bootstrap intervals (eval.metrics.bootstrap): the Numba kernels against the plain numpy loop, the resample that
draws every group once against compute_all's own numbers, coverage at the nominal rate on simulated test sets, and
group resampling (IS3's two targets, S4's five frames stay together)."""
from __future__ import annotations

import numpy as np
import pytest

from eval.metrics import MetricConfig, bootstrap as bs, compute_all


def _values(n: int, groups, seed: int = 0, *, seeds: int = 3, fixed_tau: float | None = None, gap: bool = False,
            sep_kinds=("noise", "offscreen")):
    rng = np.random.default_rng(seed)
    neg = {"silence": rng.normal(0.3, 0.1, (n, 1)), "noise": rng.normal(0.35, 0.1, (n, seeds)),
           "offscreen": rng.normal(0.5, 0.1, (n, seeds))}
    tau_kinds = [] if fixed_tau is not None else list(neg)
    res = bs.Resampling(groups, 600, seed)
    pos_max = rng.normal(0.6, 0.1, n)
    q = bs.tau_distribution(res, pos_max, neg, tau_kinds, list(sep_kinds), 0.75)
    thr = np.unique(np.concatenate([np.linspace(-1, 1, 101), bs.tau_band(q[0]), [fixed_tau or 0.5]]))
    taus = q[0] if fixed_tau is None else np.array([fixed_tau])
    ks = np.unique(bs.nearest(thr, taus[np.isfinite(taus)]))
    emb = rng.normal(size=(n, 4)), rng.normal(size=(n, 4))
    vals = bs.SampleValues(pos_max=pos_max, neg_max=neg, tau_kinds=tau_kinds, sep_kinds=list(sep_kinds),
                           tau_quantile=0.75, linear={"a": rng.random(n), "b": rng.integers(0, 2, n) * 100.0},
                           at_tau={"c": rng.random((n, ks.size)), "d": rng.random((n, ks.size))}, ks=ks,
                           thresholds=thr, fixed_tau=fixed_tau, img_emb=emb[0] if gap else None,
                           aud_emb=emb[1] if gap else None)
    return res, vals


@pytest.mark.parametrize("case", ["pairs", "fixed_tau", "singles_other_sep"])
def test_kernels_equal_the_numpy_loop(case):
    n = 30
    if case == "pairs":          # IS3-like: two targets per image, and the modality-gap magnitude
        res, vals = _values(n, np.arange(n) // 2, gap=True)
    elif case == "fixed_tau":    # tau fixed (or from a calibration set): only Sep's quantiles are resampled
        res, vals = _values(n, np.arange(n) // 5, fixed_tau=0.47)
    else:
        res, vals = _values(n, np.arange(n), sep_kinds=("offscreen",))
    fast, ref = bs.distribution(res, vals), bs.reference_distribution(res, vals)
    assert set(fast) == set(ref)
    for col in ref:
        if col in ("tau_U", "Q1_pos", "Q3_neg"):     # numpy's percentile, bit for bit (its two lerp formulas)
            np.testing.assert_array_equal(fast[col], ref[col], err_msg=col)
        else:
            np.testing.assert_allclose(fast[col], ref[col], rtol=0, atol=1e-12, err_msg=col)
    assert np.unique(fast["c"]).size > 100 and np.unique(fast["tau_U"]).size > (1 if case != "fixed_tau" else 0)


@pytest.mark.parametrize("n", [1, 5])
def test_kernels_equal_the_numpy_loop_on_small_sets(n):
    """Few values per resample: with one sample the positive quantile's upper neighbour is the last value; with one
    or five samples tau_U and Q3 (offscreen, three seeds) fall half-way between two values (numpy's lerp switches
    formulas exactly there)."""
    res, vals = _values(n, np.arange(n), sep_kinds=("offscreen",))
    fast, ref = bs.distribution(res, vals), bs.reference_distribution(res, vals)
    for col in ("tau_U", "Q1_pos", "Q3_neg"):
        np.testing.assert_array_equal(fast[col], ref[col], err_msg=col)
    for col in set(ref) - {"tau_U", "Q1_pos", "Q3_neg"}:
        np.testing.assert_allclose(fast[col], ref[col], rtol=0, atol=1e-12, err_msg=col)
    assert np.isfinite(fast["Q3_neg"]).all() and (n > 1 or (fast["Q1_pos"] == vals.pos_max[0]).all())


def test_weighted_quantile_kernel_is_numpys_percentile_bit_for_bit():
    """Half-way between two values far apart, numpy's two lerp formulas give different last bits: the kernel takes
    numpy's (b - diff * (1 - t) from t = 0.5 on); weights repeat values, zero weights drop them."""
    a, b = 0.6369616873214543, 26.97867137638703
    assert a + (b - a) * 0.5 != b - (b - a) * 0.5
    values = np.array([a, b, b + 1.0])
    assert bs._wquantile(values, np.arange(3), np.ones(3, np.int64), 0.25) == np.percentile(values, 25)
    owners, weight = np.array([1, 0, 2, 1]), np.array([2, 0, 1])
    values = np.array([0.1, 0.2, 0.4, 0.9])               # owner 0 weighs nothing; owner 1 twice
    for q in (0.0, 0.25, 0.5, 0.75, 1.0):
        want = np.percentile(np.repeat(values, weight[owners]), 100 * q)
        assert bs._wquantile(values, owners, weight, q) == want, q


def test_draws_are_reproducible_and_blocked():
    res = bs.Resampling(np.arange(10) // 2, 600, 7)
    a = np.concatenate([d for _, d in res.blocks()])
    b = np.concatenate([d for _, d in bs.Resampling(np.arange(10) // 2, 600, 7).blocks()])
    assert a.shape == (600, 5) and np.array_equal(a, b)
    first = next(bs.Resampling(np.arange(10) // 2, 40, 7).blocks())[1]
    assert np.array_equal(first, a[:40])                       # a shorter run draws the same first resamples
    assert not np.array_equal(a, np.concatenate([d for _, d in bs.Resampling(np.arange(10) // 2, 600, 8).blocks()]))


def _maps(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    pos = rng.normal(0.3, 0.2, (n, 7, 7)).astype(np.float32)
    gt = np.zeros((n, 224, 224), np.uint8)
    gt[:, 50:150, 60:170] = 1
    gt[-1] = 0                                                 # an empty ground truth: NaN IoUs on the way
    negs = {"silence": rng.normal(0.1, 0.1, (n, 7, 7)).astype(np.float32),
            "noise": rng.normal(0.1, 0.15, (n, 3, 7, 7)).astype(np.float32),
            "offscreen": rng.normal(0.2, 0.2, (n, 3, 7, 7)).astype(np.float32)}
    emb = rng.normal(size=(n, 8))
    return dict(maps_pos=pos, gt=gt, maps_neg=negs, image_ids=[f"img{i // 2}" for i in range(n)], img_emb=emb,
                aud_emb=emb + rng.normal(size=(n, 8)), retrieval_scores=rng.normal(size=(n, n)),
                labels=rng.integers(0, 4, n))


@pytest.mark.parametrize("magnitude", ["pair_l2", "modality_gap"])
def test_the_resample_of_every_group_once_gives_compute_alls_numbers(monkeypatch, magnitude):
    def every_group_once(self):
        yield 0, np.tile(np.arange(self.num_groups), (self.resamples, 1))
    monkeypatch.setattr(bs.Resampling, "blocks", every_group_once)
    out = compute_all(**_maps(40), cfg=MetricConfig(bootstrap=3, magnitude=magnitude))
    iv = out["intervals"]
    assert iv["groups"] == 20 and iv["resamples"] == 3
    assert iv["tau_U"]["lo"] == iv["tau_U"]["hi"] == out["thresholds"]["tau_U"]
    checked = 0
    for table, cols in out["tables"].items():
        for col, value in cols.items():
            if np.isfinite(value):
                assert iv["tables"][table][col]["lo"] == pytest.approx(value, abs=1e-9), (table, col)
                assert iv["tables"][table][col]["hi"] == pytest.approx(value, abs=1e-9), (table, col)
                checked += 1
    assert checked == 33                          # Table 1: 3, Table 2: 12, Table 3: 12, Table 4: 6


def test_intervals_of_compute_all_are_seeded_and_sized_like_the_binomial():
    inputs = _maps(200, seed=3)
    a = compute_all(**inputs, cfg=MetricConfig(bootstrap=1000))
    b = compute_all(**inputs, cfg=MetricConfig(bootstrap=1000))
    assert a["intervals"] == b["intervals"]
    c = compute_all(**inputs, cfg=MetricConfig(bootstrap=1000, bootstrap_seed=1))
    assert c["intervals"]["tables"] != a["intervals"]["tables"]
    iv = a["intervals"]["tables"]["table3"]["I2A_A@10"]     # a share of queries: the binomial width, pairs resampled
    p = a["tables"]["table3"]["I2A_A@10"] / 100
    half = 1.96 * np.sqrt(p * (1 - p) / 200) * 100
    assert 0.7 * half < (iv["hi"] - iv["lo"]) / 2 < 1.4 * half
    assert compute_all(**inputs, cfg=MetricConfig(bootstrap=0)).get("intervals") is None


def test_intervals_cover_the_true_value_at_the_nominal_rate():
    """200 simulated test sets of 150 samples: a share (Bernoulli 0.3), a mean (of U(0, 1)) and a quartile (Q1 of
    N(0, 1) maxima); the 95% intervals must cover the truth about 95% of the time."""
    rng = np.random.default_rng(11)
    hits = {"share": 0, "mean": 0, "q1": 0}
    n, sets = 150, 200
    for k in range(sets):
        res = bs.Resampling(np.arange(n), 400, k)
        vals = bs.SampleValues(pos_max=rng.normal(size=n), neg_max={}, tau_kinds=[], sep_kinds=[],
                               tau_quantile=0.75, linear={"share": (rng.random(n) < 0.3) * 1.0,
                                                          "mean": rng.random(n)},
                               at_tau={}, ks=np.array([0]), thresholds=np.array([0.0, 1.0]), fixed_tau=0.0)
        d = bs.distribution(res, vals)
        for name, truth in (("share", 0.3), ("mean", 0.5), ("q1", -0.6744897501960817)):
            iv = bs.interval(d[name if name != "q1" else "Q1_pos"], 0.95)
            hits[name] += iv["lo"] <= truth <= iv["hi"]
    for name, h in hits.items():
        assert 0.90 <= h / sets <= 0.98, (name, h / sets)


def test_group_resampling_keeps_pairs_and_videos_together():
    n = 40
    x = np.tile([1.0, -1.0], n // 2)                          # the two targets of an image cancel
    for groups, together in ((np.arange(n) // 2, True), (np.arange(n), False)):
        vals = bs.SampleValues(pos_max=np.zeros(n), neg_max={}, tau_kinds=[], sep_kinds=[], tau_quantile=0.75,
                               linear={"x": x}, at_tau={}, ks=np.array([0]), thresholds=np.array([0.0, 1.0]),
                               fixed_tau=0.0)
        means = bs.distribution(bs.Resampling(groups, 300, 0), vals)["x"]
        assert np.all(np.abs(means) < 1e-12) == together
    s4 = np.repeat(np.arange(8), 5)                           # S4: five frames a video
    draws = next(bs.Resampling(s4, 50, 0).blocks())[1]
    weights = np.stack([np.bincount(d, minlength=8) for d in draws])[:, s4]
    assert np.all(weights.reshape(50, 8, 5) == weights.reshape(50, 8, 5)[..., :1])
    assert bs.group_ids(["b", "a", "b", "c"], 4).tolist() == [0, 1, 0, 2]


def _paired_sets(n: int, shift: float, rng) -> dict:
    """Per-sample scores of two models on the same n images: a shared difficulty plus each model's own noise."""
    difficulty = rng.normal(size=n)
    return {"a": difficulty + rng.normal(0, 0.5, n), "b": difficulty + shift + rng.normal(0, 0.5, n)}


def test_the_paired_test_finds_a_planted_difference_and_rarely_one_that_is_not_there():
    rng = np.random.default_rng(5)
    n, sets = 120, 200
    found = {0.0: 0, 0.25: 0}
    for k in range(sets):
        for shift in found:
            cols = _paired_sets(n, shift, rng)
            vals = bs.SampleValues(pos_max=np.zeros(n), neg_max={}, tau_kinds=[], sep_kinds=[], tau_quantile=0.75,
                                   linear=cols, at_tau={}, ks=np.array([0]), thresholds=np.array([0.0, 1.0]),
                                   fixed_tau=0.0)
            d = bs.distribution(bs.Resampling(np.arange(n), 400, k), vals)
            res = bs.paired(d["a"], d["b"], cols["a"].mean(), cols["b"].mean(), 0.95)
            assert res["diff"] == pytest.approx(cols["b"].mean() - cols["a"].mean())
            excludes = res["lo"] > 0 or res["hi"] < 0
            assert excludes == (res["p"] < 0.05) or abs(res["p"] - 0.05) < 0.02   # the two agree off the edge
            found[shift] += res["p"] < 0.05
    assert 0.02 <= found[0.0] / sets <= 0.09          # the false-positive rate is near the nominal 5%
    assert found[0.25] / sets >= 0.9                  # a shift of half the noise is found almost always
    same = np.ones(50)
    assert bs.paired(same, same, 1.0, 1.0, 0.95)["p"] == 1.0
