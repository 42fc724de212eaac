"""Image transforms of the torch side (reference loader and the per-file benchmark baseline), torchvision.transforms.v2.

- train (SSL-TIE's `--img_aug moco_v2`, REFERENCE.md A.2): RandomResizedCrop(S, scale 0.3-1, bilinear, antialias),
  ColorJitter(0.4, 0.4, 0.4, 0.1) with p 0.8, RandomGrayscale p 0.2, Gaussian blur sigma U(0.1, 2) with p 0.5,
  horizontal flip p 0.5, then ImageNet normalisation.
- eval: square resize to S x S (bicubic, antialias, on float so nothing is rounded or clipped to uint8: boxes stay
  aligned with the frame, REFERENCE.md A.2), then ImageNet normalisation.
Both take a uint8 `[3, H, W]` tensor or a PIL image and return float32 `[3, S, S]`.

The DALI loader (pipeline.load.dali) decodes the JPEGs (training: only a random crop of each, area 0.3-1, aspect
3/4-4/3) and draws the flip, blur and colour factors; on the loader's device, `train_batch` then resizes each crop
to S x S (torchvision's antialiased bilinear resize, the one RandomResizedCrop uses), flips the drawn ones and applies
the rest to the whole batch (`blur_jitter_normalize`: the Gaussian blur as a batched depthwise convolution,
torchvision's kernel and reflect padding; the colour steps as one affine map per image, `jitter_affine`; ImageNet
normalisation), and `eval_batch` resizes the decoded frames as `eval_transform` does, one call per frame size.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torchvision.transforms import v2

from pipeline.load.features import CPU_CHUNK, IMAGENET_MEAN, IMAGENET_STD, to_device

JITTER = (0.4, 0.4, 0.4, 0.1)
JITTER_P = 0.8
GRAY_P = 0.2
BLUR_P = 0.5
BLUR_SIGMA = (0.1, 2.0)
CROP_SCALE = (0.3, 1.0)
FLIP_P = 0.5
LUMA = (0.299, 0.587, 0.114)            # torchvision's rgb_to_grayscale weights (ITU-R 601), also YIQ's Y row
_RGB_TO_YIQ = (LUMA, (0.596, -0.274, -0.322), (0.211, -0.523, 0.312))
_CONSTANTS: dict[tuple[str, str], tuple] = {}


def _constants(device: torch.device) -> tuple[torch.Tensor, ...]:
    """(luma weights [3], RGB->YIQ [3, 3], its inverse, float64; ImageNet mean and std [3] in grey levels, float32)
    on `device`, made once per device: building them per batch would copy from the host and wait for the device."""
    key = ("colour", str(device))
    if key not in _CONSTANTS:
        yiq = torch.tensor(_RGB_TO_YIQ, dtype=torch.float64)
        host = (torch.tensor(LUMA, dtype=torch.float64), yiq, torch.linalg.inv(yiq),
                torch.tensor(IMAGENET_MEAN) * 255.0, torch.tensor(IMAGENET_STD) * 255.0)
        _CONSTANTS[key] = tuple(c.to(device) for c in host)
    return _CONSTANTS[key]


def blur_kernel_size(sigma_max: float = BLUR_SIGMA[1]) -> int:
    """Odd kernel covering +-3 sigma of the widest blur (PIL's GaussianBlur has no fixed kernel)."""
    return 2 * int(3 * sigma_max + 0.5) + 1


BLUR_KERNEL = blur_kernel_size()


def gaussian_kernels(sigma: torch.Tensor, size: int = BLUR_KERNEL) -> torch.Tensor:
    """Per-sample 1-D Gaussian taps `[n, size]` for `sigma` `[n]`: torchvision's (exp(-x^2 / 2 sigma^2) at the
    integer offsets -size//2..size//2, normalized to sum 1)."""
    x = torch.arange(size, dtype=torch.float32, device=sigma.device) - size // 2
    pdf = torch.exp(-0.5 * (x[None, :] / sigma.float()[:, None]) ** 2)
    return pdf / pdf.sum(1, keepdim=True)


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor, size: int = BLUR_KERNEL) -> torch.Tensor:
    """Float images `[n, C, H, W]` blurred with sigma[i] each (torchvision's gaussian_blur with a `size` x `size`
    kernel: separable taps, reflect padding; H and W must exceed size // 2).

    Every channel of every image is one group of a depthwise convolution, one pass per axis, in channels-last
    layout, which the CPU convolution runs faster than the planar one."""
    n, c, h, w = x.shape
    taps = gaussian_kernels(sigma, size).repeat_interleave(c, 0)            # [n * c, size]
    half = size // 2
    y = F.pad(x.reshape(1, n * c, h, w), (half, half, half, half), mode="reflect")
    y = y.contiguous(memory_format=torch.channels_last)
    y = F.conv2d(y, taps[:, None, None, :], groups=n * c)
    y = F.conv2d(y, taps[:, None, :, None], groups=n * c)
    return y.reshape(n, c, h, w)


def train_transform(size: int) -> v2.Compose:
    return v2.Compose([
        v2.ToImage(),
        v2.RandomResizedCrop(size, scale=CROP_SCALE, interpolation=v2.InterpolationMode.BILINEAR, antialias=True),
        v2.RandomApply([v2.ColorJitter(*JITTER)], p=JITTER_P),
        v2.RandomGrayscale(p=GRAY_P),
        v2.RandomApply([v2.GaussianBlur(blur_kernel_size(), sigma=BLUR_SIGMA)], p=BLUR_P),
        v2.RandomHorizontalFlip(p=FLIP_P),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])


DRAWS = 7  # per image: brightness, contrast, saturation, hue (turns), grayscale 0/1, blur sigma (0: none), flip 0/1


def train_batch(crops: list[torch.Tensor], draws: torch.Tensor, size: int) -> torch.Tensor:
    """Decoded random crops (uint8 `[h, w, 3]` each, any size) and their draws `[B, DRAWS]` -> the augmented batch
    `[B, 3, size, size]` float32, on the crops' device: each crop resized as RandomResizedCrop resizes (bilinear,
    antialias, uint8 out), the drawn ones flipped horizontally, then `blur_jitter_normalize`.

    The per-crop resize is the CPU path of the DALI loader (`dali_graph: decode`); with `dali_graph: full` the DALI
    graph resizes and flips, and only `blur_jitter_normalize` runs in torch."""
    dev = draws.device if not crops else crops[0].device
    resized = torch.empty((len(crops), 3, size, size), dtype=torch.uint8, device=dev)
    for i, crop in enumerate(crops):
        resized[i] = v2.functional.resize(crop.permute(2, 0, 1), [size, size],
                                          interpolation=v2.InterpolationMode.BILINEAR, antialias=True)
    draws = draws.to(dev)
    flip = (draws[:, 6] > 0).nonzero().flatten()
    resized[flip] = resized[flip].flip(-1)
    return blur_jitter_normalize(resized, draws[:, :6], chunk=CPU_CHUNK if dev.type == "cpu" else None)


def eval_batch(images: list[torch.Tensor], size: int) -> torch.Tensor:
    """Decoded frames (uint8 `[h, w, 3]` each) -> `[B, 3, size, size]` float32 as `eval_transform` makes them (square
    bicubic antialiased resize on float, ImageNet normalisation), on the frames' device: one resize per distinct frame
    size (the frames of a video dataset share a few), so the ops do not grow with the batch."""
    if not images:
        return torch.empty((0, 3, size, size))
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, img in enumerate(images):
        groups.setdefault(tuple(img.shape), []).append(i)
    transform = eval_transform(size)      # on a batch of equal-sized frames: each one's values, as one call
    parts = [transform(torch.stack([images[i] for i in idx]).permute(0, 3, 1, 2)).as_subclass(torch.Tensor)
             for idx in groups.values()]
    if len(parts) == 1:
        return parts[0]
    order = torch.tensor([i for idx in groups.values() for i in idx])     # back to the batch's order
    return torch.cat(parts)[to_device(torch.argsort(order), parts[0].device)]


def eval_transform(size: int) -> v2.Compose:
    return v2.Compose([
        v2.ToImage(),
        v2.ToDtype(torch.float32, scale=True),
        v2.Resize((size, size), interpolation=v2.InterpolationMode.BICUBIC, antialias=True),
        v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])


def image_transform(size: int, train: bool) -> v2.Compose:
    return train_transform(size) if train else eval_transform(size)


def jitter_affine(draws: torch.Tensor, mean_luma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The colour steps of one image as an affine map y = M x + t on RGB in 0-255: `draws` `[B, 5]` holds
    (brightness b, contrast k, saturation s, hue h in turns, grayscale 0/1), `mean_luma` `[B]` the image's mean grey
    level. Returns M `[B, 3, 3]`, t `[B, 3]` (float64 while composing, float32 out).

    Each step is torchvision's and linear: brightness b x; contrast k x + (1 - k) mean(grey(x)) (the mean of the
    brightened image is b * mean_luma); saturation s x + (1 - s) grey(x); hue a rotation by 2 pi h of the chroma
    plane of YIQ (the linear hue shift DALI's hsv uses; torchvision rotates in HSV); grayscale grey(x) in all three
    channels. They are composed in that fixed order (torchvision draws an order per image) and the result is clipped
    to 0-255 once, after the whole map, instead of after each step. Every step keeps greys grey, so t is
    (1 - k) b mean_luma in each channel."""
    d = draws.double()
    b, k, s, h, gray = d.unbind(1)
    dev = d.device
    w, yiq, yiq_inv = _constants(dev)[:3]
    eye = torch.eye(3, dtype=torch.float64, device=dev)
    grey = w.expand(3, 3)                                                # x -> grey(x) in every channel
    angle = 2 * math.pi * h
    rot = torch.zeros(len(d), 3, 3, dtype=torch.float64, device=dev)
    rot[:, 0, 0] = 1.0
    rot[:, 1, 1], rot[:, 1, 2] = torch.cos(angle), -torch.sin(angle)
    rot[:, 2, 1], rot[:, 2, 2] = torch.sin(angle), torch.cos(angle)
    hue = yiq_inv @ rot @ yiq
    sat = s[:, None, None] * eye + (1 - s)[:, None, None] * grey
    to_grey = gray[:, None, None] * grey + (1 - gray)[:, None, None] * eye
    m = to_grey @ hue @ sat * (b * k)[:, None, None]
    t = ((1 - k) * b * mean_luma.double())[:, None].expand(-1, 3)
    return m.float(), t.float()


def blur_jitter_normalize(image: torch.Tensor, draws: torch.Tensor, chunk: int | None = None) -> torch.Tensor:
    """uint8 (or 0-255 float) images `[B, 3, H, W]` and their draws `[B, 6]` (the 5 colour draws of `jitter_affine`,
    then the blur's sigma, 0 for no blur) -> blurred (`gaussian_blur`), colour-jittered (`jitter_affine`, with the
    contrast's mean grey level taken before the blur, as torchvision jitters first), clipped to 0-255 and
    ImageNet-normalized float32, on the images' device. Images whose draws are all identity come out unchanged.

    The blur comes before the colour map (torchvision blurs after it): the two commute (both linear, the blur's
    weights sum to 1) except where the colour map clips.

    `chunk` None (the GPU path): the whole batch in a fixed number of ops, with no host-device synchronisation;
    images drawn without blur go through a one-tap kernel (sigma 0 -> taps (0..0, 1, 0..0): exactly the identity)
    unless the images are too small to pad for the kernel (then only the drawn ones are blurred, as below).
    `chunk` n (the CPU path): n images at a time, whose float copies stay in cache, and only the drawn ones blurred."""
    dev = image.device
    draws = draws.to(dev)
    sigma = draws[:, 5]
    luma, _, _, mean, std = _constants(dev)
    bounds = _clip_bounds()
    # float32 sums of 0-255 values are exact up to 65,793 pixels (2^24 / 255), and cheaper than a float64 or int64 sum
    channel_means = image.flatten(2).sum(-1, dtype=torch.float32).double() / (image.shape[2] * image.shape[3])
    m, t = jitter_affine(draws[:, :5], channel_means @ luma)
    # the normalisation folded into the map: (clip(M x + t, 0, 255) - mean) / std = clip(M' x + t', lo, hi) with
    # M' = M / std, t' = (t - mean) / std and each channel's bounds lo = -mean / std, hi = (255 - mean) / std
    m, t = m / std[:, None], (t - mean) / std
    out = torch.empty(image.shape, dtype=torch.float32, device=dev)
    step = chunk or max(len(image), 1)
    blur_all = chunk is None and min(image.shape[2:]) > BLUR_KERNEL // 2   # reflect padding needs the room
    for i in range(0, len(image), step):
        x = image[i:i + step].to(torch.float32, copy=True)
        s = sigma[i:i + step]
        if blur_all:
            x = gaussian_blur(x, s.clamp(min=_NO_BLUR))
        else:
            blur = (s > 0).nonzero().flatten()
            if len(blur):
                x[blur] = gaussian_blur(x[blur], s[blur])
        x = x.flatten(2)
        y = out[i:i + step].view_as(x)
        torch.baddbmm(t[i:i + step, :, None], m[i:i + step], x, out=y)
        for c, (lo, hi) in enumerate(bounds):      # one pass per channel plane, scalar bounds (a tensor-bound
            y[:, c].clamp_(lo, hi)                 # clamp costs the CPU 7x more)
    return out


def _clip_bounds() -> list[tuple[float, float]]:
    """Each channel's normalized image of 0 and 255, (-mean / std, (255 - mean) / std), as Python numbers computed
    once on the host from the float32 constants (no device tensor is read)."""
    key = ("bounds", "cpu")
    if key not in _CONSTANTS:
        _, _, _, mean, std = _constants(torch.device("cpu"))
        _CONSTANTS[key] = tuple((-mu / sd, (255.0 - mu) / sd) for mu, sd in zip(mean.tolist(), std.tolist()))
    return _CONSTANTS[key]


_NO_BLUR = 1e-3   # a sigma whose Gaussian taps are exactly (0, .., 0, 1, 0, .., 0) in float32
