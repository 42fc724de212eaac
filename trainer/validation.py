"""Validation of a training run on the held-out `val` split: every loss term, the mean map maxima (positive, silence,
noise) and, with `data.synth_json`, pointing accuracy: the share of clips whose map maximum falls inside the sounding
object's box. The plateau scheduler and the best-checkpoint choice read these metrics (trainer.train).

BatchNorm runs in eval mode, without augmentation, equivariance view or all-gather; the silence and noise inputs are
built for every recipe (`negative_inputs(..., always=True)`) from a generator seeded by (seed, rank), so every
validation of a run sees the same noise. Sums are reduced over the processes before dividing.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from accelerate import Accelerator

from pipeline.common.config import ConfigError
from trainer.config import TrainConfig
from trainer.objective import Objective, negative_inputs


class Validator:
    """`run(objective)` -> {"val/<term>": mean over held-out samples, ...}; {} when the run has no val split."""

    def __init__(self, cfg: TrainConfig, loader, acc: Accelerator):
        self.cfg, self.loader, self.acc = cfg, loader, acc
        self.rank, self.world, self.device = acc.process_index, acc.num_processes, acc.device
        self.boxes = read_boxes(cfg.data.synth_json) if cfg.data.synth_json else None

    @torch.no_grad()
    def run(self, objective: Objective) -> dict[str, float]:
        if self.loader is None:
            return {}
        cfg, device = self.cfg, self.device
        objective.eval()
        gen = torch.Generator(device=device).manual_seed(cfg.seed * 1000 + 7919 * (self.rank + 1))
        sums: dict[str, torch.Tensor] = {}
        count = torch.zeros((), device=device)
        hits = torch.zeros(2, device=device)
        self.loader.set_epoch(0)
        for i, batch in enumerate(self.loader):
            if cfg.val_batches and i >= cfg.val_batches:
                break
            image = batch.image.to(device)
            logmel = batch.logmel.to(device)
            silence, noise = negative_inputs(cfg, logmel, gen, always=True)
            with self.acc.autocast():
                terms = objective(image, logmel, silence, noise, None, gather=False, return_map=True)
            amap = terms.pop("map")
            if self.boxes is not None:
                h, n = pointing_hits(amap, batch.key, self.boxes)
                hits += torch.tensor([h, n], device=device, dtype=hits.dtype)
            b = image.shape[0]
            for name, value in terms.items():
                sums[name] = sums.get(name, 0.0) + value.float() * b
            count += b
        objective.train()
        if self.world > 1:
            count = self.acc.reduce(count, reduction="sum")
            hits = self.acc.reduce(hits, reduction="sum")
            sums = {k: self.acc.reduce(v, reduction="sum") for k, v in sums.items()}
        n = max(float(count.item()), 1.0)
        out = {f"val/{k}": float(v.item()) / n for k, v in sums.items()}
        if self.boxes is not None:
            out["val/pointing"] = float(hits[0].item()) / max(float(hits[1].item()), 1.0)
            out["val/pointing_samples"] = float(hits[1].item())
        return out


def read_boxes(path: str) -> dict[str, list[list[float]]]:
    """clip id -> normalized [x1, y1, x2, y2] boxes of the sounding object(s) at the centre frame, from a
    pipeline.synth `synth.json` (clips without a visible source, e.g. offscreen ones, have no boxes)."""
    try:
        meta = json.loads(Path(path).read_text())
        return {c["id"]: [list(map(float, b)) for b in c["boxes"]] for c in meta["clips"] if c.get("boxes")}
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path}: not a readable synth.json with per-clip boxes ({exc})") from None


def pointing_hits(amap: torch.Tensor, keys: list[str], boxes: dict[str, list[list[float]]]) -> tuple[int, int]:
    """(hits, samples with boxes): a hit when the map's maximum pixel centre lies inside one of the clip's boxes.
    The evaluation image is the whole frame resized to a square, so normalized frame coordinates apply directly."""
    h, w = amap.shape[-2:]
    flat = amap.reshape(amap.shape[0], -1).argmax(1).tolist()
    hits = total = 0
    for key, idx in zip(keys, flat):
        if key not in boxes:
            continue
        y, x = (idx // w + 0.5) / h, (idx % w + 0.5) / w
        total += 1
        hits += any(b[0] <= x <= b[2] and b[1] <= y <= b[3] for b in boxes[key])
    return hits, total
