"""The loss terms on maps of several pixels and batches of several images (values on both sides of every mask
threshold), the objective's total from its returned terms under every switch combination, and the ranges of the
random transform draw. Expected values come from plain-Python loops over the formulas of trainer/losses.py's
docstring, not from the code under test."""
from __future__ import annotations

import itertools
import math

import pytest
import torch

from trainer import objective as objective_module
from trainer.config import ContrastiveConfig, EquivarianceConfig, ModelConfig, SaNConfig, TrainConfig
from trainer.equivariance import Transform, draw_transform, equivariance_loss, transform_image, transform_map
from trainer.losses import contrastive_logits, contrastive_loss, negative_map, negative_map_loss
from trainer.model import AVENet
from trainer.objective import Objective, gather_with_grad, negative_inputs


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


def _inputs(batch: int = 3, seed: int = 3):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, 32, 32, generator=g), torch.randn(batch, 1, 257, 20, generator=g)


SWITCHES = list(itertools.product([False, True], repeat=6))


@pytest.fixture(scope="module")
def model() -> AVENet:
    """A small AVENet whose BatchNorm statistics have seen data: with fresh statistics the all-zero silence input
    encodes to the zero vector, and every silence term would read 0 whatever the code did with it."""
    torch.manual_seed(0)
    net = AVENet(ModelConfig(width=4)).train()
    g = torch.Generator().manual_seed(9)
    with torch.no_grad():
        for _ in range(3):
            net.encode_audio(torch.randn(4, 1, 257, 20, generator=g) * 3 + 1)
            net.encode_image(torch.randn(4, 3, 32, 32, generator=g))
    return net.eval()


@pytest.mark.parametrize("eq,s_neg,n_neg,s_loss,n_loss,t_view", SWITCHES)
def test_total_is_the_documented_sum_of_the_terms(model, eq, s_neg, n_neg, s_loss, n_loss, t_view):
    """Total = 0.5 (L_cl + L_cl_t) + w_eq L_eq + lambda_sn L_SN, L_SN = L_S + L_N averaged over the two views when
    `san.transformed_view`; one view: L_cl + lambda_sn (L_S + L_N). Weights away from 1 and 0.5 so that a swapped or
    dropped weight shows."""
    san = SaNConfig(silence_negative=s_neg, noise_negative=n_neg, silence_map_loss=s_loss, noise_map_loss=n_loss,
                    transformed_view=t_view, lambda_sn=1.7)
    cfg = TrainConfig(san=san, equivariance=EquivarianceConfig(enabled=eq, weight=0.3), gather_features=False)
    image, logmel = _inputs()
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
    image, logmel = _inputs(2, seed=1)

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


@pytest.mark.parametrize("reduction,t_view,per_sample", [("mean", True, False), ("sum", False, True)])
def test_every_returned_number_recomputed_from_the_encoders(model, reduction, t_view, per_sample):
    """Each term the objective returns (losses, map maxima, the map) recomputed in float32 from the model's two
    encoders and the loss functions (tested above by hand), with the transform drawn for the step."""
    san = SaNConfig(reduction=reduction, transformed_view=t_view, silence_per_sample=per_sample, lambda_sn=0.6,
                    silence_db=True)
    cfg = TrainConfig(san=san, equivariance=EquivarianceConfig(weight=0.4), gather_features=False)
    image, logmel = _inputs()
    silence, noise = negative_inputs(cfg, logmel, torch.Generator().manual_seed(4))
    tf = draw_transform(3, cfg.equivariance, torch.Generator().manual_seed(2))
    tf = Transform(tf.angles, 0.5, True, True)           # the shrinking, flipping branch
    with torch.no_grad():
        t = Objective(model, cfg)(image, logmel, silence, noise, tf, return_map=True)
        a = model.encode_audio(torch.cat([logmel, silence, noise]))
        a_pos, a_sil, a_noise = a[:3], a[3:3 + silence.shape[0]], a[-3:]
        want, maps = {}, {}
        for sfx, img in (("", image), ("_t", transform_image(image, tf))):
            v = model.encode_image(img).float()
            sil, nse = negative_map(v, a_sil), negative_map(v, a_noise)
            negs = [sil, nse] if sfx == "" or t_view else []         # the second view's S/N only with t_view
            logits, amap = contrastive_logits(v, a_pos, cfg.contrastive, 0, negs)
            maps[sfx] = amap
            want[f"loss_cl{sfx}"] = contrastive_loss(logits)
            want[f"max_pos{sfx}"] = amap.flatten(1).amax(1).mean()
            if sfx == "" or t_view:
                want[f"max_silence{sfx}"] = sil.flatten(1).amax(1).mean()
                want[f"max_noise{sfx}"] = nse.flatten(1).amax(1).mean()
                want[f"loss_s{sfx}"] = negative_map_loss(sil, reduction)
                want[f"loss_n{sfx}"] = negative_map_loss(nse, reduction)
        want["loss_eq"] = equivariance_loss(maps["_t"], transform_map(maps[""], tf, 32))
    assert t["map"].shape == (3, 1, 2, 2) and torch.equal(t["map"], maps[""])
    for key, value in want.items():
        assert torch.allclose(t[key], value, rtol=1e-5, atol=1e-7), (key, t[key], value)
    assert want["loss_s"] > 1e-4 and want["max_silence"] > 1e-3          # the silence terms are not trivially 0
    assert set(t) == set(want) | {"loss", "loss_sn", "map"}
    with torch.no_grad():
        assert "map" not in Objective(model, cfg)(image, logmel, silence, noise, tf)


def test_negative_inputs_shapes_and_values():
    logmel = torch.zeros(3, 1, 257, 20)
    for per_sample, s_db, n_db in itertools.product([False, True], repeat=3):
        cfg = TrainConfig(san=SaNConfig(silence_per_sample=per_sample, silence_db=s_db, noise_db=n_db))
        silence, noise = negative_inputs(cfg, logmel, torch.Generator().manual_seed(0))
        assert silence.shape == (3 if per_sample else 1, 1, 257, 20) and noise.shape == (3, 1, 257, 20)
        assert torch.all(silence == (-100.0 if s_db else 0.0))
        if n_db:       # dB of mel power: finite, above the -100 floor, and with negative values (power < 1)
            assert noise.min() < 0 and noise.min() >= -100
        else:          # linear mel power: non-negative
            assert noise.min() >= 0
    off = TrainConfig(san=SaNConfig(silence_negative=False, silence_map_loss=False, noise_negative=False,
                                    noise_map_loss=False))
    assert negative_inputs(off, logmel, None) == (None, None)
    silence, noise = negative_inputs(off, logmel, torch.Generator().manual_seed(0), always=True)
    assert silence.shape == (1, 1, 257, 20) and noise.shape == (3, 1, 257, 20)


def test_gather_is_asked_for_exactly_when_configured(model, monkeypatch):
    """`gather=None` follows cfg.gather_features; an explicit True/False wins; both views gather alike."""
    calls = []

    def fake(x):
        calls.append(x.shape[0])
        return x, 0
    monkeypatch.setattr(objective_module, "gather_with_grad", fake)
    image, logmel = _inputs(2)
    for cfg_gather, arg, want in [(True, None, 2), (False, None, 0), (False, True, 2), (True, False, 0)]:
        cfg = TrainConfig(gather_features=cfg_gather)
        silence, noise = negative_inputs(cfg, logmel, torch.Generator().manual_seed(0))
        tf = draw_transform(2, cfg.equivariance, torch.Generator().manual_seed(0))
        calls.clear()
        with torch.no_grad():
            Objective(model, cfg)(image, logmel, silence, noise, tf, gather=arg)
        assert calls == [2] * want, (cfg_gather, arg, calls)


def test_gather_without_a_process_group_is_the_identity():
    x = torch.arange(6.0).view(3, 2)
    out, offset = gather_with_grad(x)
    assert out is x and offset == 0


def _gather_rank(rank: int, path: str, results) -> None:
    torch.distributed.init_process_group("gloo", init_method=f"file://{path}", rank=rank, world_size=2)
    x = torch.full((2, 3), float(rank)) + torch.arange(3.0)
    out, offset = gather_with_grad(x)
    results.put((rank, out.tolist(), offset))
    torch.distributed.destroy_process_group()


def test_gather_concatenates_ranks_in_order(tmp_path):
    # called here too, without a process group, so that mutation testing (which maps each function to the tests
    # that call it in-process) runs this test for every mutant of the function
    assert gather_with_grad(torch.zeros(1, 1))[1] == 0
    ctx = torch.multiprocessing.get_context("spawn")
    results = ctx.SimpleQueue()
    procs = [ctx.Process(target=_gather_rank, args=(r, str(tmp_path / "rdzv"), results)) for r in range(2)]
    for p in procs:
        p.start()
    got = dict((r, (out, off)) for r, out, off in (results.get() for _ in procs))
    for p in procs:
        p.join(60)
    rows = [[0.0, 1.0, 2.0]] * 2 + [[1.0, 2.0, 3.0]] * 2
    assert got == {0: (rows, 0), 1: (rows, 2)}


def test_encoding_the_audio_per_view_gives_the_same_terms(model):
    image, logmel = _inputs(2)
    out = []
    for once in (True, False):
        cfg = TrainConfig(encode_audio_once=once, gather_features=False)
        silence, noise = negative_inputs(cfg, logmel, torch.Generator().manual_seed(0))
        tf = draw_transform(2, cfg.equivariance, torch.Generator().manual_seed(0))
        with torch.no_grad():
            out.append(Objective(model, cfg)(image, logmel, silence, noise, tf))
    assert out[0].keys() == out[1].keys() and all(torch.allclose(out[0][k], out[1][k]) for k in out[0])


def test_negative_map_of_a_rectangular_map():
    v = torch.arange(2 * 2 * 2 * 3, dtype=torch.float32).view(2, 2, 2, 3)        # [b=2, C=2, h=2, w=3]
    a = torch.tensor([[1.0, 0.0], [0.5, -1.0]])
    m = negative_map(v, a)
    want = torch.stack([v[0, 0], 0.5 * v[1, 0] - v[1, 1]]).unsqueeze(1)
    assert m.shape == (2, 1, 2, 3) and torch.equal(m, want)
    assert torch.equal(negative_map(v, a[:1]), torch.stack([v[0, 0], v[1, 0]]).unsqueeze(1))   # shared: [1, C]


def test_transform_matrices_by_hand():
    c = 16.0                                              # size 32: rotation about (16, 16)
    for shrink, k in ((True, 0.5), (False, 1.0)):
        m = Transform(torch.tensor([90.0, 0.0]), 0.5, False, shrink).matrices(32)
        # 90 degrees: alpha = 0, beta = k; translation ((1 - alpha) c - beta c, beta c + (1 - alpha) c)
        want0 = [[0.0, k, c - k * c], [-k, 0.0, k * c + c]]
        want1 = [[k, 0.0, (1 - k) * c], [0.0, k, (1 - k) * c]]
        assert torch.allclose(m, torch.tensor([want0, want1]), atol=1e-6), (shrink, m)
    m = Transform(torch.tensor([30.0]), 1.0, False, True).matrices(32)
    assert math.isclose(m[0, 0, 0].item(), math.cos(math.pi / 6), rel_tol=1e-6)
    assert math.isclose(m[0, 0, 1].item(), 0.5, rel_tol=1e-6)


def test_scaling_resizes_with_half_pixel_centres():
    """Identity warp (no rotation, no warp scale), scale 0.5: bilinear resize without corner alignment samples the
    8-pixel ramp x at 2j + 0.5; the map of 4 pixels is first upsampled to the 8-pixel canvas the same way."""
    ramp = torch.arange(8.0).view(1, 1, 1, 8).expand(1, 3, 8, 8).contiguous()
    tf = Transform(torch.zeros(1), 0.5, False, False)
    out = transform_image(ramp, tf)
    assert out.shape == (1, 3, 4, 4) and torch.allclose(out[0, 0, 0], torch.tensor([0.5, 2.5, 4.5, 6.5]), atol=1e-5)
    amap = torch.arange(4.0).view(1, 1, 1, 4).expand(1, 1, 4, 4).contiguous()
    # 4 -> 8: source x = (i + 0.5) / 2 - 0.5 clamped to [0, 3]; then 8 -> 2 samples at 4j + 1.5
    up = [min(max((i + 0.5) / 2 - 0.5, 0.0), 3.0) for i in range(8)]
    down = [(up[4 * j + 1] + up[4 * j + 2]) / 2 for j in range(2)]
    got = transform_map(amap, tf, 8)
    assert got.shape == (1, 1, 2, 2) and torch.allclose(got[0, 0, 0], torch.tensor(down), atol=1e-5)


def test_equivariance_loss_upsamples_with_half_pixel_centres():
    small = torch.tensor([[0.0, 1.0], [2.0, 3.0]]).view(1, 1, 2, 2)
    w = [(1.0, 0.0), (0.75, 0.25), (0.25, 0.75), (0.0, 1.0)]     # 2 -> 4, sources clamped to the edges
    up = [[sum(wr[r] * wc[c] * small[0, 0, r, c].item() for r in range(2) for c in range(2)) for wc in w] for wr in w]
    want = sum(x * x for row in up for x in row) / 16
    assert math.isclose(equivariance_loss(torch.zeros(1, 1, 4, 4), small).item(), want, rel_tol=1e-6)


def test_transform_draws_come_from_the_given_generator_only():
    cfg = EquivarianceConfig()
    first = []
    for global_seed in (1, 2):
        torch.manual_seed(global_seed)                     # the global generator must not matter
        g = torch.Generator().manual_seed(11)
        first.append([draw_transform(3, cfg, g) for _ in range(4)])
    for a, b in zip(*first):
        assert torch.equal(a.angles, b.angles) and (a.scale, a.flip) == (b.scale, b.flip)
    # the stream a checkpoint restores: each draw takes one integer per angle, one for the scale, one for the flip
    g = torch.Generator().manual_seed(11)
    d = draw_transform(3, cfg, g)
    g2 = torch.Generator().manual_seed(11)
    angles = torch.randint(-30, 31, (3,), generator=g2).float()
    scale = [0.5, 1.0][torch.randint(2, (1,), generator=g2).tolist()[0]]
    flip = torch.rand((), generator=g2).tolist() < 0.5
    assert torch.equal(d.angles, angles) and (d.scale, d.flip, d.double_shrink) == (scale, flip, True)
    assert torch.equal(torch.rand(4, generator=g), torch.rand(4, generator=g2))     # both streams in step
