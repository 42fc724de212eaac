"""Image transforms of the torch side (reference loader and the per-file benchmark baseline), torchvision.transforms.v2.

- train (SSL-TIE's `--img_aug moco_v2`, REFERENCE.md A.2): RandomResizedCrop(S, scale 0.3-1, bilinear, antialias),
  ColorJitter(0.4, 0.4, 0.4, 0.1) with p 0.8, RandomGrayscale p 0.2, Gaussian blur sigma U(0.1, 2) with p 0.5,
  horizontal flip p 0.5, then ImageNet normalisation.
- eval: square resize to S x S (bicubic, antialias, on float so nothing is rounded or clipped to uint8: boxes stay
  aligned with the frame, REFERENCE.md A.2), then ImageNet normalisation.
Both take a uint8 `[3, H, W]` tensor or a PIL image and return float32 `[3, S, S]`.
The DALI loader builds the same steps from DALI operators (pipeline/loader_dali.py).
"""
from __future__ import annotations

import torch
from torchvision.transforms import v2

from pipeline.features import IMAGENET_MEAN, IMAGENET_STD

JITTER = (0.4, 0.4, 0.4, 0.1)
JITTER_P = 0.8
GRAY_P = 0.2
BLUR_P = 0.5
BLUR_SIGMA = (0.1, 2.0)
CROP_SCALE = (0.3, 1.0)
FLIP_P = 0.5


def blur_kernel_size(sigma_max: float = BLUR_SIGMA[1]) -> int:
    """Odd kernel covering +-3 sigma of the widest blur (PIL's GaussianBlur has no fixed kernel)."""
    return 2 * int(3 * sigma_max + 0.5) + 1


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


def eval_transform(size: int) -> v2.Compose:
    return v2.Compose([
        v2.ToImage(),
        v2.ToDtype(torch.float32, scale=True),
        v2.Resize((size, size), interpolation=v2.InterpolationMode.BICUBIC, antialias=True),
        v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])


def image_transform(size: int, train: bool) -> v2.Compose:
    return train_transform(size) if train else eval_transform(size)
