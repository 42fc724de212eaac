"""Ground-truth masks from boxes, as the public evaluation code draws them (REFERENCE.md D.2).

Normalised boxes (VGG-SS `vggss.json`): (xmin, ymin, xmax, ymax) relative to the full frame, clipped to [0, 1],
multiplied by S and truncated to int; pixel boxes (IS3 `gt_box`): already at S x S, truncated to int and clipped to
the image. Each box fills mask[ymin:ymax, xmin:xmax] = 1 and the mask is the union of all boxes of the sample.
Rows holding NaN are padding (samples with fewer boxes than the widest one).
"""
from __future__ import annotations

import numpy as np


def boxes_to_mask(boxes: np.ndarray, size: int = 224, normalized: bool = True) -> np.ndarray:
    """[B, 4] boxes of one sample -> uint8 [size, size] union mask."""
    mask = np.zeros((size, size), dtype=np.uint8)
    for box in np.asarray(boxes, dtype=np.float64).reshape(-1, 4):
        if np.isnan(box).any():
            continue
        if normalized:
            x0, y0, x1, y1 = (int(v * size) for v in np.clip(box, 0.0, 1.0))
        else:
            x0, y0, x1, y1 = (min(max(int(v), 0), size) for v in box)
        mask[y0:y1, x0:x1] = 1
    return mask


def masks_from_boxes(boxes: np.ndarray, size: int = 224, normalized: bool = True) -> np.ndarray:
    """[N, B, 4] padded boxes -> uint8 [N, size, size]."""
    boxes = np.asarray(boxes, dtype=np.float64)
    if boxes.ndim != 3 or boxes.shape[2] != 4:
        raise ValueError(f"boxes must have shape [N, B, 4], got {boxes.shape}")
    return np.stack([boxes_to_mask(b, size, normalized) for b in boxes]) if len(boxes) else \
        np.zeros((0, size, size), dtype=np.uint8)
