"""Unit tests of the LVS tri-map contrastive loss, the silence/noise terms and the equivariance transform,
against values computed by hand on tiny tensors."""
import math

import torch

from trainer.config import ContrastiveConfig, EquivarianceConfig
from trainer.equivariance import Transform, draw_transform, equivariance_loss, transform_image, transform_map
from trainer.losses import contrastive_logits, contrastive_loss, negative_map, negative_map_loss, soft_score


def _sig(x):
    return 1.0 / (1.0 + math.exp(-x))


def test_soft_score_matches_hand_formula():
    vals = [0.7, 0.5, -0.2, 0.66]
    sim = torch.tensor(vals).view(1, 1, 2, 2)
    w = [_sig((x - 0.65) / 0.03) for x in vals]
    expected = sum(wi * x for wi, x in zip(w, vals)) / sum(w)
    assert math.isclose(soft_score(sim, 0.65, 0.03).item(), expected, rel_tol=1e-5)


def _toy():
    # one-pixel maps: every soft score is the pixel itself, so the logits are the cosines
    v = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).view(2, 2, 1, 1)
    a = torch.tensor([[0.6, 0.8], [1.0, 0.0]])
    return v, a  # S = [[0.6, 1.0], [0.8, 0.0]]


def test_contrastive_logits_and_loss_by_hand():
    v, a = _toy()
    logits, amap = contrastive_logits(v, a, ContrastiveConfig())
    t = 0.07
    rows = [[0.6, 0.6 * -99, 1.0, 0.6], [0.0, 0.8, 0.0 * -99, 0.0]]  # [pos, easy (diag x -99), hard neg]
    assert torch.allclose(logits, torch.tensor(rows) / t, atol=1e-5)
    assert torch.allclose(amap.flatten(), torch.tensor([0.6, 0.0]))
    ce = [math.log(sum(math.exp(x / t) for x in r)) - r[0] / t for r in rows]
    assert math.isclose(contrastive_loss(logits).item(), sum(ce) / 2, rel_tol=1e-5)


def test_tri_map_hard_negative_by_hand():
    vals = [0.9, 0.5, 0.3, 0.45]
    # a 2x2 map from a fixed audio vector: v(p) = (x, sqrt(1 - x^2)), a = (1, 0)
    v = torch.tensor([[x, math.sqrt(1 - x * x)] for x in vals]).T.reshape(1, 2, 2, 2)
    a = torch.tensor([[1.0, 0.0]])
    for trimap, thr in ((True, 0.4), (False, 0.65)):
        logits, _ = contrastive_logits(v, a, ContrastiveConfig(trimap=trimap))
        n = [1 - _sig((x - thr) / 0.03) for x in vals]
        hard = sum(ni * x for ni, x in zip(n, vals)) / sum(n)
        assert math.isclose(logits[0, -1].item() * 0.07, hard, rel_tol=1e-5)


def test_switches_change_logit_length():
    v, a = _toy()
    cfg = ContrastiveConfig()
    sil = negative_map(v, torch.tensor([[0.0, 1.0]]))  # shared silence vector
    noise = negative_map(v, torch.tensor([[1.0, 0.0], [0.6, 0.8]]))  # one noise vector per image
    assert contrastive_logits(v, a, cfg)[0].shape == (2, 4)  # B + 2
    assert contrastive_logits(v, a, cfg, negative_maps=[sil])[0].shape == (2, 5)
    logits, _ = contrastive_logits(v, a, cfg, negative_maps=[sil, noise])
    assert logits.shape == (2, 6)
    # one-pixel maps: the extra logits are the cosines with silence/noise
    assert torch.allclose(logits[:, 4:] * 0.07, torch.tensor([[0.0, 1.0], [1.0, 0.8]]), atol=1e-6)
    assert contrastive_logits(v, a, ContrastiveConfig(hard_negative=False))[0].shape == (2, 3)
    excl, _ = contrastive_logits(v, a, ContrastiveConfig(diagonal="exclude"))
    assert torch.allclose(excl * 0.07, torch.tensor([[0.6, 1.0, 0.6], [0.0, 0.8, 0.0]]), atol=1e-6)


def test_gathered_audio_offset_picks_own_pair():
    v, a = _toy()
    # image 1 alone on a process whose samples start at global index 1
    logits, amap = contrastive_logits(v[1:], a, ContrastiveConfig(), offset=1)
    assert torch.allclose(logits * 0.07, torch.tensor([[0.0, 0.8, 0.0, 0.0]]), atol=1e-6)
    assert amap.item() == 0.0


def test_negative_map_loss_values():
    zero = torch.zeros(3, 1, 4, 4)
    assert negative_map_loss(zero, "sum").item() == 0.0
    assert negative_map_loss(zero, "mean").item() == 0.0
    m = torch.tensor([[0.5, -0.5], [0.0, 0.0]]).view(1, 1, 2, 2)
    two = torch.cat([m, torch.ones(1, 1, 2, 2)])
    assert math.isclose(negative_map_loss(two, "sum").item(), (0.5 + 4.0) / 2)
    assert math.isclose(negative_map_loss(two, "mean").item(), (0.125 + 1.0) / 2)
    # a map from features orthogonal to the negative audio is zero
    v = torch.tensor([1.0, 0.0]).view(1, 2, 1, 1).expand(2, 2, 3, 3)
    assert negative_map_loss(negative_map(v, torch.tensor([[0.0, 1.0]])), "sum").item() == 0.0


def test_identity_and_flip_transforms_are_exact():
    x = torch.randn(2, 3, 16, 16)
    ident = Transform(torch.zeros(2), 1.0, False, True)
    assert torch.allclose(transform_image(x, ident), x, atol=1e-5)
    flip = Transform(torch.zeros(2), 1.0, True, True)
    assert torch.allclose(transform_image(x, flip), x.flip(-1), atol=1e-5)


def test_rotation_is_counter_clockwise_about_centre():
    img = torch.zeros(1, 1, 33, 33)
    img[0, 0, 16, 26] = 1.0  # 10 px right of the centre (16.5 ~ S/2)
    out = transform_image(img, Transform(torch.tensor([90.0]), 1.0, False, True))
    y, x = divmod(int(out.flatten().argmax()), 33)
    assert (y, x) in {(6, 16), (6, 17), (7, 16), (7, 17)}  # moved above the centre


def test_transforms_commute_with_a_pixelwise_model():
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 1, 1, bias=False)  # zero padding commutes with a linear map
    x = torch.randn(3, 3, 32, 32)
    gen = torch.Generator().manual_seed(1)
    for double in (True, False):
        for _ in range(3):
            tf = draw_transform(3, EquivarianceConfig(double_shrink=double), gen)
            a = conv(transform_image(x, tf))
            b = transform_map(conv(x), tf, 32)
            assert a.shape == b.shape == (3, 1, int(32 * tf.scale), int(32 * tf.scale))
            assert equivariance_loss(a, b).item() < 1e-9


def test_scale_half_double_shrinks_and_halves_the_map():
    tf = Transform(torch.zeros(2), 0.5, False, True)
    img = torch.ones(2, 3, 64, 64)
    out = transform_image(img, tf)
    assert out.shape == (2, 3, 32, 32)
    # content shrunk 0.5 in the warp and again by the resize: the ones cover the central 16x16
    assert out[0, 0, 16, 16] == 1.0 and out[0, 0, 2, 2] == 0.0
    assert 200 < int((out[0, 0] > 0.5).sum()) < 330
    assert transform_map(torch.ones(2, 1, 4, 4), tf, 64).shape == (2, 1, 2, 2)
    single = transform_image(img, Transform(torch.zeros(2), 0.5, False, False))
    assert single.shape == (2, 3, 32, 32) and bool((single > 0.99).all())


def test_equivariance_loss_resizes_second_argument():
    a = torch.zeros(1, 1, 4, 4)
    b = torch.ones(1, 1, 8, 8)
    assert math.isclose(equivariance_loss(a, b).item(), 1.0)
    assert math.isclose(equivariance_loss(a, a + 0.5).item(), 0.25)
