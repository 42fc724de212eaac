"""Deterministic weights for golden-value tests of the model adapters: every tensor of a state dict drawn from a
generator seeded by its name (CRC-32), so the same values come out whatever module order a network registers. Weights
~ N(0, 1/fan_in); norm scales 1 + 0.1 N; biases and running means 0.1 N; running variances 1 + |0.1 N|; counters 0."""
from __future__ import annotations

import math
import zlib

import torch


def golden_state(template: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for name, t in template.items():
        g = torch.Generator().manual_seed(zlib.crc32(name.encode()))
        if not t.is_floating_point():
            out[name] = torch.zeros_like(t)
            continue
        z = torch.randn(t.shape, generator=g, dtype=torch.float32)
        leaf = name.rsplit(".", 1)[-1]
        if leaf == "running_var":
            out[name] = 1 + (0.1 * z).abs()
        elif leaf in ("bias", "running_mean"):
            out[name] = 0.1 * z
        elif t.dim() == 1:                      # norm scales
            out[name] = 1 + 0.1 * z
        else:
            out[name] = z / math.sqrt(t[0].numel())
    return out


def golden_inputs(image_size: int = 224, spec: tuple[int, int] = (257, 200)) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of 2 images and 2 spectrograms."""
    g = torch.Generator().manual_seed(20261207)
    return (torch.randn(2, 3, image_size, image_size, generator=g),
            torch.randn(2, 1, *spec, generator=g))
