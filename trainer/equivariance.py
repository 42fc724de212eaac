"""SSL-TIE's geometric transformation for the equivariance loss (REFERENCE.md B.3), without kornia.

One draw per step: an integer rotation angle per sample in U{-max..max} degrees about the canvas centre (S/2, S/2),
one scale for the batch (uniform over `scales`, SSL-TIE: 0.5 or 1) and one horizontal-flip decision for the batch.
The image is warped with kornia's `get_rotation_matrix2d` matrix (angle counter-clockwise, scale about the centre) to
an S x S canvas with zero padding, then resized to int(S * scale) (bilinear) and flipped. With `double_shrink` (SSL-TIE)
the scale is inside the warp matrix as well, so content shrinks twice at scale 0.5. A map [B, 1, h, w] is transformed
the same way: bilinearly resized to S x S, warped, resized to int(h * scale), flipped.
L_eq = MSE(map of the transformed image, transformed map), the second resized to the first's size if they differ.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from pipeline.load.features import to_device
from trainer.config import EquivarianceConfig


@dataclass
class Transform:
    angles: torch.Tensor  # [B] degrees, float32, CPU
    scale: float
    flip: bool
    double_shrink: bool

    def matrices(self, size: int) -> torch.Tensor:
        """Affine source->destination matrices [B, 2, 3] in pixel coordinates (kornia/OpenCV rotation convention),
        float32 on the CPU."""
        warp_scale = self.scale if self.double_shrink else 1.0
        theta = self.angles.double() * math.pi / 180.0
        alpha = warp_scale * torch.cos(theta)
        beta = warp_scale * torch.sin(theta)
        c = size / 2.0
        m = torch.stack([
            torch.stack([alpha, beta, (1 - alpha) * c - beta * c], dim=1),
            torch.stack([-beta, alpha, beta * c + (1 - alpha) * c], dim=1),
        ], dim=1)
        return m.float()

    def inverse_matrices(self, size: int, device: torch.device) -> torch.Tensor:
        """The destination->source matrices [B, 2, 3] that `warp_affine` samples with, computed on the CPU (where
        the angles were drawn: inverting on a GPU would wait for it) and copied to `device` without waiting."""
        m = self.matrices(size)
        inv = torch.linalg.inv(m[:, :, :2].double()).float()
        return to_device(torch.cat([inv, -(inv @ m[:, :, 2:])], dim=2), device)


def draw_transform(batch: int, cfg: EquivarianceConfig, generator: torch.Generator) -> Transform:
    """Random transform for one step, drawn from a CPU generator (its state is checkpointed); the scale and flip are
    Python numbers read from CPU tensors, so drawing never waits for a GPU."""
    angles = torch.randint(-cfg.max_rotation, cfg.max_rotation + 1, (batch,), generator=generator).float()
    scale = float(cfg.scales[torch.randint(len(cfg.scales), (1,), generator=generator).tolist()[0]])
    flip = torch.rand((), generator=generator).tolist() < cfg.flip_prob
    return Transform(angles, scale, flip, cfg.double_shrink)


def warp_affine(x: torch.Tensor, inverse: torch.Tensor) -> torch.Tensor:
    """Warp [B, C, S, S] onto an S x S canvas, zeros outside; `inverse` [B, 2, 3] maps destination pixel coordinates
    to source ones (`Transform.inverse_matrices`)."""
    b, _, h, w = x.shape
    ys, xs = torch.meshgrid(torch.arange(h, device=x.device, dtype=torch.float32),
                            torch.arange(w, device=x.device, dtype=torch.float32), indexing="ij")
    dst = torch.stack([xs, ys], dim=-1).view(1, -1, 2)  # [1, HW, 2] (x, y)
    src = dst @ inverse[:, :, :2].transpose(1, 2) + inverse[:, :, 2].unsqueeze(1)  # [B, HW, 2]
    grid = torch.stack([2 * src[..., 0] / (w - 1) - 1, 2 * src[..., 1] / (h - 1) - 1], dim=-1).view(b, h, w, 2)
    return F.grid_sample(x, grid.to(x.dtype), mode="bilinear", padding_mode="zeros", align_corners=True)


def _finish(x: torch.Tensor, tf: Transform, out_size: int) -> torch.Tensor:
    if out_size != x.shape[-1]:
        x = F.interpolate(x, size=(out_size, out_size), mode="bilinear", align_corners=False)
    return x.flip(-1) if tf.flip else x


def transform_image(image: torch.Tensor, tf: Transform) -> torch.Tensor:
    """The transformed view of a batch of square images [B, 3, S, S] -> [B, 3, int(S*scale), int(S*scale)]."""
    size = image.shape[-1]
    warped = warp_affine(image, tf.inverse_matrices(size, image.device))
    return _finish(warped, tf, int(size * tf.scale))


def transform_map(amap: torch.Tensor, tf: Transform, image_size: int) -> torch.Tensor:
    """The same transform on a map [B, 1, h, w]: resize to the image canvas, warp, resize to int(h*scale), flip."""
    h = amap.shape[-1]
    up = F.interpolate(amap.float(), size=(image_size, image_size), mode="bilinear", align_corners=False)
    warped = warp_affine(up, tf.inverse_matrices(image_size, amap.device))
    return _finish(warped, tf, int(h * tf.scale))


def equivariance_loss(map_t: torch.Tensor, transformed: torch.Tensor) -> torch.Tensor:
    """MSE between the map of the transformed image and the transformed map (resized to the former if needed)."""
    if transformed.shape[-2:] != map_t.shape[-2:]:
        transformed = F.interpolate(transformed, size=map_t.shape[-2:], mode="bilinear", align_corners=False)
    return F.mse_loss(map_t.float(), transformed.float())
