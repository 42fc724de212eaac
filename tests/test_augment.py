"""pipeline.load.augment's batched blur and colour map (the DALI loader's) against torchvision's functions."""
import numpy as np
import pytest
import torch
from torchvision.transforms.v2 import functional as TF

from pipeline.load import augment
from pipeline.load.features import IMAGENET_MEAN, IMAGENET_STD


@pytest.fixture(autouse=True)
def _fresh_constants():
    """Every test builds the colour constants and clip bounds itself (they are cached per device)."""
    augment._CONSTANTS.clear()
    yield


def mid_range_images(n=3, size=16, seed=0):
    """uint8 images in 90-160: the jitter below never clips them, so the maps must agree exactly."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(90, 161, (n, 3, size, size), generator=g, dtype=torch.uint8)


def normalize(x255):
    mean = torch.tensor(IMAGENET_MEAN)[:, None, None]
    std = torch.tensor(IMAGENET_STD)[:, None, None]
    return (x255 / 255.0 - mean) / std


def no_blur(colour_draws):
    return torch.cat([colour_draws, torch.zeros(len(colour_draws), 1)], dim=1)


def test_brightness_contrast_saturation_are_torchvisions():
    img = mid_range_images()
    draws = torch.tensor([[1.1, 0.8, 1.2, 0.0, 0.0], [0.9, 1.15, 0.7, 0.0, 0.0], [1.0, 1.0, 1.0, 0.0, 0.0]])
    ours = augment.blur_jitter_normalize(img, no_blur(draws))
    for i, (b, k, s, _, _) in enumerate(draws.tolist()):
        x = img[i].float() / 255.0
        ref = TF.adjust_saturation(TF.adjust_contrast(TF.adjust_brightness(x, b), k), s) * 255.0
        assert float((ours[i] - normalize(ref)).abs().max()) < 1e-4
    assert torch.allclose(ours[2], normalize(img[2].float()), atol=1e-5)   # identity draws: plain normalisation


def test_grayscale_and_hue_keep_luma():
    img = mid_range_images(seed=1)
    luma = torch.tensor(augment.LUMA)
    grey = augment.blur_jitter_normalize(img, no_blur(torch.tensor([[1.0, 1.0, 1.0, 0.0, 1.0]] * 3)))
    ref = TF.rgb_to_grayscale(img.float() / 255.0, num_output_channels=3) * 255.0
    # torchvision weighs red 0.2989, we 0.299 (so that the weights sum to 1 and greys stay grey): < 0.03 grey levels
    assert float((grey - torch.stack([normalize(r) for r in ref])).abs().max()) < 5e-4
    m, t = augment.jitter_affine(torch.tensor([[1.0, 1.0, 1.0, 0.08, 0.0], [1.0, 1.0, 1.0, 1.0, 0.0]]),
                                 torch.zeros(2))
    assert torch.allclose(luma @ m[0], luma, atol=1e-6) and torch.allclose(m[0].sum(1), torch.ones(3), atol=1e-6)
    assert not torch.allclose(m[0], torch.eye(3), atol=1e-2)             # a hue shift moves colours...
    assert torch.allclose(m[1], torch.eye(3), atol=1e-6)                 # ...and a whole turn is the identity
    assert torch.all(t == 0)


def test_clipping_happens_once_at_the_end():
    img = torch.full((1, 3, 4, 4), 250, dtype=torch.uint8)
    out = augment.blur_jitter_normalize(img, no_blur(torch.tensor([[1.4, 1.0, 1.0, 0.0, 0.0]])))
    assert torch.allclose(out[0], normalize(torch.full((3, 4, 4), 255.0)), atol=1e-5)


def test_blur_is_torchvisions_gaussian_blur():
    g = torch.Generator().manual_seed(3)
    img = torch.randint(0, 256, (4, 3, 24, 20), generator=g, dtype=torch.uint8)
    sigma = torch.tensor([0.1, 0.7, 2.0, 0.0])          # 0: not blurred
    identity = torch.tensor([[1.0, 1.0, 1.0, 0.0, 0.0]] * 4)
    ours = augment.blur_jitter_normalize(img, torch.cat([identity, sigma[:, None]], dim=1))
    for i, s in enumerate(sigma.tolist()):
        x = img[i].float()
        ref = TF.gaussian_blur(x, [augment.BLUR_KERNEL] * 2, [s, s]) if s else x
        assert float((ours[i] - normalize(ref)).abs().max()) < 1e-4, s
    assert augment.gaussian_kernels(torch.tensor([0.5, 2.0])).sum(1).allclose(torch.ones(2))


def test_blur_then_colour_is_colour_then_blur_where_nothing_clips():
    img = mid_range_images(n=2, size=20, seed=4)
    draws = torch.tensor([[1.1, 0.8, 1.2, 0.05, 0.0, 1.3], [0.9, 1.2, 0.8, -0.05, 1.0, 0.6]])
    ours = augment.blur_jitter_normalize(img, draws)
    for i in range(2):
        mean_luma = img[i].float().mean((1, 2)) @ torch.tensor(augment.LUMA)
        m, t = augment.jitter_affine(draws[i:i + 1, :5], mean_luma[None])
        coloured = (m[0] @ img[i].float().flatten(1) + t[0][:, None]).view(3, 20, 20)
        ref = TF.gaussian_blur(coloured, [augment.BLUR_KERNEL] * 2, [float(draws[i, 5])] * 2)
        assert float((ours[i] - normalize(ref)).abs().max()) < 1e-3


def test_eval_batch_of_mixed_frame_sizes_is_each_frames_own_transform():
    """Frames of two sizes, interleaved: each comes out as torchvision's resize + normalisation of it alone, in the
    batch's order."""
    g = torch.Generator().manual_seed(0)
    frames = [torch.randint(0, 256, shape, generator=g, dtype=torch.uint8)
              for shape in ((20, 30, 3), (16, 16, 3), (20, 30, 3), (16, 16, 3), (16, 16, 3))]
    out = augment.eval_batch(frames, 12)
    assert out.shape == (5, 3, 12, 12) and out.dtype == torch.float32
    for frame, got in zip(frames, out):
        x = frame.permute(2, 0, 1).float() / 255.0
        x = TF.resize(x, [12, 12], interpolation=TF.InterpolationMode.BICUBIC, antialias=True)
        want = TF.normalize(x, IMAGENET_MEAN, IMAGENET_STD)
        assert torch.allclose(got, want, atol=1e-5)
    assert augment.eval_batch([], 12).shape == (0, 3, 12, 12)
    chw = frames[0].permute(2, 0, 1)
    assert torch.equal(augment.image_transform(12, train=False)(chw), augment.eval_transform(12)(chw))


def test_blur_kernel_covers_three_sigma():
    assert [augment.blur_kernel_size(s) for s in (0.1, 1.0, 1.2, 2.0)] == [1, 7, 9, 13]
    assert augment.BLUR_KERNEL == 13


def test_train_batch_resizes_flips_then_normalizes():
    """Identity colour draws and no blur: each crop resized as RandomResizedCrop resizes it (bilinear, antialias,
    uint8), flipped where drawn, normalised; the batch keeps its order and mixed crop sizes."""
    g = torch.Generator().manual_seed(1)
    crops = [torch.randint(0, 256, shape, generator=g, dtype=torch.uint8) for shape in ((30, 20, 3), (12, 12, 3),
                                                                                        (25, 40, 3))]
    identity = [1.0, 1.0, 1.0, 0.0, 0.0, 0.0]
    draws = torch.tensor([identity + [1.0], identity + [0.0], identity + [1.0]])
    out = augment.train_batch(crops, draws, 16)
    assert out.shape == (3, 3, 16, 16) and out.dtype == torch.float32
    for crop, flip, got in zip(crops, (True, False, True), out):
        x = TF.resize(crop.permute(2, 0, 1), [16, 16], interpolation=TF.InterpolationMode.BILINEAR, antialias=True)
        x = x.flip(-1) if flip else x
        want = TF.normalize(x.float() / 255.0, IMAGENET_MEAN, IMAGENET_STD)
        assert torch.allclose(got, want, atol=1e-5)


def test_train_transform_is_the_documented_recipe():
    """SSL-TIE's training augmentation (its "moco_v2" recipe, ../shared/REFERENCE.md A.2): crop scale (0.3, 1)
    bilinear antialiased, colour jitter (0.4, 0.4, 0.4, 0.1) with p 0.8, grayscale p 0.2, Gaussian blur sigma
    (0.1, 2) over 13 taps with p 0.5, flip p 0.5, ImageNet normalisation."""
    steps = augment.train_transform(32).transforms
    assert [type(t).__name__ for t in steps] == ["ToImage", "RandomResizedCrop", "RandomApply", "RandomGrayscale",
                                                 "RandomApply", "RandomHorizontalFlip", "ToDtype", "Normalize"]
    _, crop, jitter, gray, blur, flip, to_float, norm = steps
    assert to_float.dtype == torch.float32 and to_float.scale
    assert (tuple(crop.size), crop.scale, crop.interpolation, crop.antialias) == (
        (32, 32), (0.3, 1.0), TF.InterpolationMode.BILINEAR, True)
    assert jitter.p == 0.8 and (jitter.transforms[0].brightness, jitter.transforms[0].hue) == ((0.6, 1.4), (-0.1, 0.1))
    assert (jitter.transforms[0].contrast, jitter.transforms[0].saturation) == ((0.6, 1.4), (0.6, 1.4))
    assert gray.p == 0.2 and blur.p == 0.5 and flip.p == 0.5
    assert tuple(blur.transforms[0].kernel_size) == (13, 13) and tuple(blur.transforms[0].sigma) == (0.1, 2.0)
    assert (tuple(norm.mean), tuple(norm.std)) == (IMAGENET_MEAN, IMAGENET_STD)


def test_jitter_affine_composition_by_hand():
    """M = G @ H @ S * (b k), t = (1 - k) b mean: saturation toward grey, a YIQ chroma rotation by 2 pi h (counter-
    clockwise in the (I, Q) plane), grayscale, with the NTSC YIQ matrix and the ITU-R 601 luma row written out."""
    yiq = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
    luma = yiq[0]
    draws = [[1.2, 0.7, 0.6, 0.125, 0.0], [0.8, 1.3, 1.4, -0.3, 1.0]]
    means = [100.0, 37.5]
    m, t = augment.jitter_affine(torch.tensor(draws), torch.tensor(means))
    for i, ((b, k, s, h, g), mean) in enumerate(zip(draws, means)):
        a = 2 * np.pi * h
        rot = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
        grey = np.tile(luma, (3, 1))
        sat = s * np.eye(3) + (1 - s) * grey
        to_grey = g * grey + (1 - g) * np.eye(3)
        want = to_grey @ np.linalg.inv(yiq) @ rot @ yiq @ sat * b * k
        assert np.allclose(m[i].numpy(), want, atol=1e-6), i
        assert np.allclose(t[i].numpy(), [(1 - k) * b * mean] * 3, atol=1e-4)


@pytest.mark.parametrize("chunk", [None, 2])
def test_blur_jitter_normalize_on_rectangular_images_that_clip(chunk):
    """Both code paths (the whole batch; chunks of 2 with only the drawn images blurred) on 5 images of 24 x 20 with
    values at both ends (so that the map clips at 0 and 255): each image's output is its own blur, colour map (mean
    grey taken before the blur), clip and normalisation, computed here with torchvision's blur and the map applied as
    a matrix."""
    g = torch.Generator().manual_seed(5)
    img = torch.randint(0, 256, (5, 3, 24, 20), generator=g, dtype=torch.uint8)
    img[:, :, :4] = 0
    img[:, :, -4:] = 255
    draws = torch.tensor([[1.3, 1.2, 1.1, 0.1, 0.0, 1.5], [0.7, 0.8, 0.9, -0.2, 1.0, 0.0],
                          [1.0, 1.0, 1.0, 0.0, 0.0, 0.6], [1.1, 0.9, 1.3, 0.05, 0.0, 0.0],
                          [1.0, 1.0, 1.0, 0.0, 0.0, 0.0]])
    ours = augment.blur_jitter_normalize(img, draws, chunk=chunk)
    for i in range(5):
        x = img[i].float()
        mean_luma = float(x.mean((1, 2)) @ torch.tensor(augment.LUMA))
        m, t = augment.jitter_affine(draws[i:i + 1, :5], torch.tensor([mean_luma]))
        s = float(draws[i, 5])
        blurred = TF.gaussian_blur(x, [augment.BLUR_KERNEL] * 2, [s, s]) if s else x
        ref = (m[0] @ blurred.flatten(1) + t[0][:, None]).view(3, 24, 20).clamp(0, 255)
        assert float((ours[i] - normalize(ref)).abs().max()) < 2e-3, i
    assert torch.allclose(ours[4], normalize(img[4].float()), atol=1e-5)
    assert float(ours.min()) == pytest.approx(float(normalize(torch.zeros(3, 1, 1)).min()), abs=1e-5)


def test_batches_of_one_size_one_crop_and_none():
    g = torch.Generator().manual_seed(2)
    frames = [torch.randint(0, 256, (10, 14, 3), generator=g, dtype=torch.uint8) for _ in range(2)]
    one_size = augment.eval_batch(frames, 8)
    assert torch.allclose(one_size, torch.stack([augment.eval_batch([f], 8)[0] for f in frames]))
    single = augment.train_batch(frames[:1], torch.tensor([[1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0]]), 8)
    assert single.shape == (1, 3, 8, 8)
    assert augment.train_batch([], torch.zeros(0, augment.DRAWS), 8).shape == (0, 3, 8, 8)
    assert type(augment.image_transform(8, train=True).transforms[1]).__name__ == "RandomResizedCrop"


@pytest.mark.parametrize("shape", [(6, 6), (6, 20), (20, 6), (7, 7), (7, 30)])
def test_small_images_on_both_paths(shape):
    """Reflect padding needs more room than the kernel's half (6 pixels): a batch of images 6 pixels on a side, none
    drawn to be blurred, must not be padded at all on the batch path; from 7 pixels on, both paths blur as
    torchvision does. (Crops reach the blur resized to the training size, far above either.)"""
    g = torch.Generator().manual_seed(7)
    img = torch.randint(0, 256, (3, 3, *shape), generator=g, dtype=torch.uint8)
    sigmas = (0.8, 0.0, 1.7) if min(shape) > augment.BLUR_KERNEL // 2 else (0.0, 0.0, 0.0)
    draws = torch.tensor([[1.0, 1.0, 1.0, 0.0, 0.0, s] for s in sigmas])
    for chunk in (None, 2):
        out = augment.blur_jitter_normalize(img, draws, chunk=chunk)
        for i, s in enumerate(sigmas):
            x = img[i].float()
            x = TF.gaussian_blur(x, [augment.BLUR_KERNEL] * 2, [s, s]) if s else x
            assert float((out[i] - normalize(x)).abs().max()) < 1e-3, (chunk, i)


def test_blur_with_another_kernel_size():
    x = torch.rand(2, 3, 12, 10, generator=torch.Generator().manual_seed(0)) * 255
    out = augment.gaussian_blur(x, torch.tensor([0.6, 1.1]), size=5)
    for i, s in enumerate((0.6, 1.1)):
        assert torch.allclose(out[i], TF.gaussian_blur(x[i], [5, 5], [s, s]), atol=1e-3)
