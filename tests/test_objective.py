"""The loss terms on maps of several pixels and batches of several images (values on both sides of every mask
threshold), the objective's total from its returned terms under every switch combination, and the ranges of the
random transform draw. Expected values come from plain-Python loops over the formulas of trainer/losses.py's
docstring, not from the code under test."""
from __future__ import annotations

import itertools
import math

import pytest
import torch

from trainer.config import ContrastiveConfig, EquivarianceConfig, ModelConfig, SaNConfig, TrainConfig
from trainer.equivariance import draw_transform
from trainer.losses import contrastive_logits, contrastive_loss
from trainer.model import AVENet
from trainer.objective import Objective, negative_inputs


def _sig(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _masked_mean(vals: list[float], weights: list[float]) -> float:
    return sum(w * x for w, x in zip(weights, vals)) / sum(weights)


# two images, three audios (image i's own audio is column offset + i), 2 x 2 maps; cosines chosen on both sides of
# epsilon 0.65 and epsilon2 0.4, within a few tau of them so that the soft masks are neither 0 nor 1
MAPS = [  # MAPS[i][j] = the map S(v_i, a_j), row-major
    [[0.70, 0.66, 0.42, 0.30], [0.64, 0.60, 0.38, 0.10], [0.90, 0.20, 0.41, 0.67]],
    [[0.10, 0.39, 0.68, 0.55], [0.66, 0.63, 0.45, 0.35], [0.05, 0.62, 0.71, 0.43]],
]


def _tensors() -> tuple[torch.Tensor, torch.Tensor]:
    """Visual maps [2, 3, 2, 2] and audios [3, 3] whose dot products are MAPS: audio j is basis vector j and pixel p of
    image i is (S_i0(p), S_i1(p), S_i2(p)). (The trainer's vectors are unit length; the arithmetic does not need it.)"""
    v = torch.tensor(MAPS).view(2, 3, 2, 2)
    return v, torch.eye(3)


@pytest.mark.parametrize("offset,diagonal,trimap,eps,eps2,tau", [
    (0, "ssl_tie", True, 0.65, 0.4, 0.03), (1, "ssl_tie", False, 0.65, 0.4, 0.03),
    (1, "exclude", True, 0.62, 0.45, 0.05), (0, "exclude", False, 0.6, 0.35, 0.02)])
def test_contrastive_logits_on_several_pixels_and_images(offset, diagonal, trimap, eps, eps2, tau):
    cfg = ContrastiveConfig(epsilon=eps, epsilon2=eps2, tau=tau, trimap=trimap, diagonal=diagonal, temperature=0.1)
    v, a = _tensors()
    logits, amap = contrastive_logits(v, a, cfg, offset=offset)
    want = []
    for i in range(2):
        own = MAPS[i][offset + i]
        pos = _masked_mean(own, [_sig((x - eps) / tau) for x in own])
        easy = [_masked_mean(MAPS[i][j], [_sig((x - eps) / tau) for x in MAPS[i][j]]) for j in range(3)]
        if diagonal == "ssl_tie":
            easy[offset + i] *= -99.0
        else:
            del easy[offset + i]
        thr = eps2 if trimap else eps
        hard = _masked_mean(own, [1 - _sig((x - thr) / tau) for x in own])
        want.append([pos] + easy + [hard])
    assert torch.allclose(logits * 0.1, torch.tensor(want), atol=2e-6), (logits * 0.1, want)
    assert torch.allclose(amap.flatten(1), torch.tensor([MAPS[0][offset], MAPS[1][offset + 1]]), atol=1e-6)
    rows = [[x / 0.1 for x in r] for r in want]
    ce = sum(math.log(sum(math.exp(x) for x in r)) - r[0] for r in rows) / 2
    assert math.isclose(contrastive_loss(logits).item(), ce, rel_tol=1e-5)


SWITCHES = list(itertools.product([False, True], repeat=6))


@pytest.fixture(scope="module")
def model() -> AVENet:
    torch.manual_seed(0)
    return AVENet(ModelConfig(width=4)).eval()


@pytest.mark.parametrize("eq,s_neg,n_neg,s_loss,n_loss,t_view", SWITCHES)
def test_total_is_the_documented_sum_of_the_terms(model, eq, s_neg, n_neg, s_loss, n_loss, t_view):
    """Total = 0.5 (L_cl + L_cl_t) + w_eq L_eq + lambda_sn L_SN, L_SN = L_S + L_N averaged over the two views when
    `san.transformed_view`; one view: L_cl + lambda_sn (L_S + L_N). Weights away from 1 and 0.5 so that a swapped or
    dropped weight shows."""
    san = SaNConfig(silence_negative=s_neg, noise_negative=n_neg, silence_map_loss=s_loss, noise_map_loss=n_loss,
                    transformed_view=t_view, lambda_sn=1.7)
    cfg = TrainConfig(san=san, equivariance=EquivarianceConfig(enabled=eq, weight=0.3), gather_features=False)
    g = torch.Generator().manual_seed(3)
    image = torch.randn(3, 3, 32, 32, generator=g)
    logmel = torch.randn(3, 1, 257, 20, generator=g)
    silence, noise = negative_inputs(cfg, logmel, torch.Generator().manual_seed(4))
    transform = draw_transform(3, cfg.equivariance, torch.Generator().manual_seed(5)) if eq else None
    with torch.no_grad():
        t = Objective(model, cfg)(image, logmel, silence, noise, transform)
    views = ["", "_t"] if eq else [""]
    sn = {sfx: sum(t[f"loss_{k}{sfx}"].item() for k, on in (("s", s_loss), ("n", n_loss)) if on)
          for sfx in views if sfx == "" or t_view}
    for sfx in views:                       # terms exist exactly when their switches say so
        counted = sfx == "" or t_view
        assert (f"loss_s{sfx}" in t) == (s_loss and counted) and (f"loss_n{sfx}" in t) == (n_loss and counted)
        assert (f"max_silence{sfx}" in t) == ((s_neg or s_loss) and counted)
        assert (f"max_noise{sfx}" in t) == ((n_neg or n_loss) and counted)
    if eq:
        l_sn = 0.5 * (sn[""] + sn["_t"]) if t_view else sn[""]
        want = 0.5 * (t["loss_cl"].item() + t["loss_cl_t"].item()) + 0.3 * t["loss_eq"].item() + 1.7 * l_sn
    else:
        l_sn = sn[""]
        want = t["loss_cl"].item() + 1.7 * l_sn
        assert "loss_eq" not in t and "loss_cl_t" not in t
    assert math.isclose(t["loss"].item(), want, rel_tol=1e-6, abs_tol=1e-7)
    if s_loss or n_loss:
        assert math.isclose(t["loss_sn"].item(), l_sn, rel_tol=1e-6, abs_tol=1e-7)
    else:
        assert "loss_sn" not in t


def test_negative_logits_follow_their_switches(model):
    """The silence and noise scores enter the logits only with S / N on: switching S off changes L_cl, switching
    only the map loss off does not."""
    g = torch.Generator().manual_seed(1)
    image, logmel = torch.randn(2, 3, 32, 32, generator=g), torch.randn(2, 1, 257, 20, generator=g)

    def loss_cl(**switches):
        cfg = TrainConfig(san=SaNConfig(**switches), equivariance=EquivarianceConfig(enabled=False),
                          gather_features=False)
        silence, noise = negative_inputs(cfg, logmel, torch.Generator().manual_seed(2), always=True)
        with torch.no_grad():
            return Objective(model, cfg)(image, logmel, silence, noise, None)["loss_cl"].item()
    full = loss_cl()
    assert loss_cl(silence_map_loss=False, noise_map_loss=False) == full
    assert loss_cl(silence_negative=False) != full and loss_cl(noise_negative=False) != full
    assert loss_cl(silence_negative=False, noise_negative=False) != loss_cl(silence_negative=False)


def test_transform_draws_reach_both_ends_of_every_range():
    cfg = EquivarianceConfig(max_rotation=3, scales=(0.5, 1.0), flip_prob=0.5)
    g = torch.Generator().manual_seed(0)
    draws = [draw_transform(4, cfg, g) for _ in range(200)]
    angles = torch.cat([d.angles for d in draws])
    assert set(angles.tolist()) == {-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0}
    assert {d.scale for d in draws} == {0.5, 1.0} and {d.flip for d in draws} == {False, True}
    assert all(len(set(d.angles.tolist())) > 1 for d in draws[:5])        # one angle per sample, not per batch
    never = EquivarianceConfig(max_rotation=0, scales=(1.0,), flip_prob=0.0)
    assert all(d.angles.abs().sum() == 0 and d.scale == 1.0 and not d.flip
               for d in (draw_transform(4, never, g) for _ in range(20)))
