"""The loader contract: `LoaderConfig`, the `Batch` every loader yields, and `LoaderBase`, the epoch bookkeeping and
shared end of both backends (DALI in `pipeline.load.dali`, reference in `pipeline.load.reference`; `pipeline.load.build`
picks one). The backends import only this module, never the one that builds them.

A loader yields `Batch`es for one epoch per iteration (docs/ARCHITECTURE.md section 3):
- `loader.set_epoch(e)` picks the epoch (new shuffle from `seed` and `e`, rank r reads range (r + e) % W),
  `len(loader)` is its number of batches (equal on every rank when training),
- `loader.state_dict()` / `load_state_dict()` save and restore the position inside an epoch (epoch, batches consumed,
  and for DALI the pipeline checkpoint: reader position and random state), so a resumed run continues mid-epoch.

Both backends produce the log-mel in dB with `features.mel_power` (DALI: from the pipeline's audio windows, tiled
there, on the loader's device; reference: in the DataLoader workers) and share the rest here, so the two cannot drift
apart: SpecAugment (training; the masked cells read -100 dB, as when the mel power is zeroed before dB), drawn from a
generator seeded by (seed, epoch, rank, batch), which makes a resumed epoch reproduce the batches it would have
produced.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Iterator, Literal

import torch

from pipeline.load import features
from pipeline.load.shards import EpochPlan, ShardSet


@dataclass
class LoaderConfig:
    backend: Literal["dali", "reference"] = "dali"
    device: Literal["cpu", "cuda"] = "cpu"       # DALI: 'mixed' JPEG decode + GPU ops on cuda, device_id=None on cpu
    dali_graph: Literal["auto", "full", "decode"] = "auto"   # DALI: where the per-sample work runs (pipeline.load.dali)
    batch_size: int = 32
    image_size: int = 224                         # S of the [B, 3, S, S] images (the CPU demo uses 112 or 96)
    clip_seconds: float = 10.0                    # model input audio length after tiling (10 s -> T 670, 5 s -> 335)
    window_seconds: float = 3.0                   # audio window cut from the clip (set = clip_seconds for evaluation)
    audio_window: Literal["center", "random"] = "center"
    augment: bool = True                          # training only: moco_v2 image augmentation + SpecAugment
    spec_augment: bool = True                     # training only, with augment
    workers: int = 0                              # DALI threads / DataLoader workers; 0 = all cores
    shuffle_buffer: int = 512                     # training shuffle buffer (samples), per rank


@dataclass
class Batch:
    image: torch.Tensor                 # float32 [B, 3, S, S], ImageNet-normalized
    logmel: torch.Tensor                # float32 [B, 1, 257, T], dB
    label: torch.Tensor                 # int64 [B]
    key: list[str]

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "Batch":
        moved = {f.name: (v.to(device, non_blocking=non_blocking) if isinstance(v, torch.Tensor) else v)
                 for f in fields(self) for v in [getattr(self, f.name)]}
        return Batch(**moved)


@dataclass
class LoaderStats:
    skipped: int = 0          # samples without image or audio, skipped


class LoaderBase:
    """Epoch bookkeeping and the shared end of both backends; subclasses implement `_raw_batches`."""

    def __init__(self, cfg: LoaderConfig, shards: ShardSet, *, split: str, train: bool, rank: int, world_size: int,
                 seed: int, device: torch.device | str, pin_memory: bool = False):
        self.cfg, self.shards, self.split, self.train = cfg, shards, split, train
        self.pin_memory = pin_memory and torch.device(device).type == "cpu"   # the backend pins in its own threads
        self.rank, self.world_size, self.seed = rank, world_size, seed
        self.device = torch.device(device)
        self.epoch = 0
        self.consumed = 0                      # batches of self.epoch handed out
        self._resume: dict | None = None
        self.stats = LoaderStats(skipped=shards.skipped)
        self.input_samples = features.seconds_to_samples(cfg.clip_seconds)
        self.window_samples = features.seconds_to_samples(min(cfg.window_seconds, cfg.clip_seconds))
        self.augment = train and cfg.augment
        self.plan(0)  # refuse now a split too small for one batch per rank

    def plan(self, epoch: int) -> EpochPlan:
        return self.shards.plan(self.rank, self.world_size, epoch, self.cfg.batch_size, self.train)

    def __len__(self) -> int:
        return self.plan(self.epoch).num_batches

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.epoch, self.consumed, self._resume = epoch, 0, None

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "batches": self.consumed, "rank": self.rank, "world_size": self.world_size,
                "seed": self.seed, "backend": self.cfg.backend}

    def load_state_dict(self, state: dict) -> None:
        mine = self.state_dict()
        for k in ("rank", "world_size", "seed", "backend"):
            if state.get(k) != mine[k]:
                raise ValueError(f"loader state is for {k}={state.get(k)!r}, this loader has a different {k}")
        self.epoch, self.consumed, self._resume = int(state["epoch"]), int(state["batches"]), dict(state)

    def __iter__(self) -> Iterator[Batch]:
        plan = self.plan(self.epoch)
        start = self.consumed if self._resume is not None else 0
        resume, self._resume = self._resume, None
        self.consumed = start
        for step, (image, mel, label, keys) in enumerate(self._raw_batches(plan, start, resume), start=start):
            batch = self._finish(image, mel, label, keys, step)
            self.consumed = step + 1
            yield batch
        if self.consumed >= plan.num_batches:
            self.epoch, self.consumed = self.epoch + 1, 0

    def _raw_batches(self, plan: EpochPlan, start: int, resume: dict | None
                     ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[str]]]:
        """(image [B,3,S,S] normalized, log-mel [B,1,257,T] in dB, label [B], keys) for batches start.. of the
        plan; the tensors are the batch's own (`_finish` masks the log-mel in place)."""
        raise NotImplementedError

    def _finish(self, image: torch.Tensor, logmel_db: torch.Tensor, label: torch.Tensor, keys: list[str],
                step: int) -> Batch:
        logmel = logmel_db
        if self.augment and self.cfg.spec_augment:   # this batch's own tensor: changed in place
            g = features.position_generator(self.seed, self.epoch, self.rank, step)
            logmel = features.spec_augment(logmel, g, inplace=True, fill=features.DB_FLOOR)
        return Batch(image=image, logmel=logmel, label=label, key=keys)
