"""One loader interface, two implementations (DALI, reference), chosen by `LoaderConfig.backend`.

`build_loader(cfg, shard_dir_or_urls, split=..., train=..., rank, world_size, seed, device)` returns a loader that
yields `Batch`es for one epoch per iteration (docs/ARCHITECTURE.md section 3):
- `loader.set_epoch(e)` picks the epoch (new shuffle from `seed` and `e`, rank r reads range (r + e) % W),
  `len(loader)` is its number of batches (equal on every rank when training),
- `loader.state_dict()` / `load_state_dict()` save and restore the position inside an epoch (epoch, batches consumed,
  and for DALI the pipeline checkpoint: reader position and random state), so a resumed run continues mid-epoch.

Both backends produce the log-mel in dB with `features.mel_power` (DALI: from the pipeline's audio windows, tiled
there, on the loader's device; reference: in the DataLoader workers) and share the rest here, so the two cannot drift
apart: SpecAugment (training; the masked cells read -100 dB, as when the mel power is zeroed before dB), offscreen
partners, and the optional silence/noise inputs, all drawn from one generator seeded by (seed, epoch, rank, batch),
which makes a resumed epoch reproduce the batches it would have produced.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, fields
from typing import Iterator, Literal

import torch

from pipeline import features
from pipeline.shardindex import EpochPlan, ShardError, ShardSet

__all__ = ["Batch", "LoaderConfig", "ShardError", "build_loader"]


@dataclass
class LoaderConfig:
    backend: Literal["dali", "reference"] = "dali"
    device: Literal["cpu", "cuda"] = "cpu"       # DALI: 'mixed' JPEG decode + GPU ops on cuda, device_id=None on cpu
    batch_size: int = 32
    image_size: int = 224                         # S of the [B, 3, S, S] images (the CPU demo uses 112 or 96)
    clip_seconds: float = 10.0                    # model input audio length after tiling (10 s -> T 670, 5 s -> 335)
    window_seconds: float = 3.0                   # audio window cut from the clip (set = clip_seconds for evaluation)
    audio_window: Literal["center", "random"] = "center"
    augment: bool = True                          # training only: moco_v2 image augmentation + SpecAugment
    spec_augment: bool = True                     # training only, with augment
    offscreen: bool = False                       # add Batch.logmel_offscreen (a clip of another class)
    negatives: bool = False                       # add Batch.logmel_silence and Batch.logmel_noise
    negatives_db: bool = False                    # dB on silence/noise (default: linear mel, REFERENCE.md C)
    workers: int = 0                              # DALI threads / DataLoader workers; 0 = all cores
    shuffle_buffer: int = 512                     # training shuffle buffer (samples), per rank


@dataclass
class Batch:
    image: torch.Tensor                 # float32 [B, 3, S, S], ImageNet-normalized
    logmel: torch.Tensor                # float32 [B, 1, 257, T], dB
    label: torch.Tensor                 # int64 [B]
    key: list[str]
    logmel_offscreen: torch.Tensor | None = None
    logmel_silence: torch.Tensor | None = None
    logmel_noise: torch.Tensor | None = None

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
                 seed: int, device: torch.device | str):
        self.cfg, self.shards, self.split, self.train = cfg, shards, split, train
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
        previous: tuple[torch.Tensor, torch.Tensor] | None = None
        for step, (image, mel, label, keys) in enumerate(self._raw_batches(plan, start, resume), start=start):
            batch = self._finish(image, mel, label, keys, step, previous)
            previous = (batch.logmel, batch.label)
            self.consumed = step + 1
            yield batch
        if self.consumed >= plan.num_batches:
            self.epoch, self.consumed = self.epoch + 1, 0

    def _raw_batches(self, plan: EpochPlan, start: int, resume: dict | None
                     ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[str]]]:
        """(image [B,3,S,S] normalized, log-mel [B,1,257,T] in dB, label [B], keys) for batches start.. of the
        plan; the tensors are the batch's own (`_finish` masks the log-mel in place)."""
        raise NotImplementedError

    def _finish(self, image: torch.Tensor, logmel_db: torch.Tensor, label: torch.Tensor, keys: list[str], step: int,
                previous: tuple[torch.Tensor, torch.Tensor] | None) -> Batch:
        g = features.negative_generator(self.seed, self.epoch, self.rank, step)
        logmel = logmel_db
        if self.augment and self.cfg.spec_augment:   # this batch's own tensor: changed in place
            logmel = features.spec_augment(logmel, g, inplace=True, fill=features.DB_FLOOR)
        batch = Batch(image=image, logmel=logmel, label=label, key=keys)
        if self.cfg.offscreen:
            pool_mel, pool_label = logmel, label
            if previous is not None and bool((label[:, None] == label[None, :]).all()):
                pool_mel = torch.cat([logmel, previous[0]])
                pool_label = torch.cat([label, previous[1]])
            idx = features.offscreen_indices(label, pool_label, g)
            batch.logmel_offscreen = pool_mel[idx.to(pool_mel.device)]
        if self.cfg.negatives:
            n = len(keys)
            batch.logmel_silence = features.silence_logmel(n, self.input_samples, db=self.cfg.negatives_db,
                                                           device=logmel.device)
            batch.logmel_noise = features.noise_logmel(n, self.input_samples, g, db=self.cfg.negatives_db,
                                                       device=logmel.device)
        return batch


def default_workers(cfg: LoaderConfig) -> int:
    return cfg.workers if cfg.workers > 0 else (os.cpu_count() or 1)


def build_loader(cfg: LoaderConfig, shard_dir_or_urls, *, split: str = "train", train: bool = True, rank: int = 0,
                 world_size: int = 1, seed: int = 0, device: torch.device | str | None = None) -> LoaderBase:
    """The loader of `cfg.backend` over the `split` shards of a folder (or a list of tar paths)."""
    shards = ShardSet.open(shard_dir_or_urls, split)
    device = device if device is not None else ("cuda" if cfg.device == "cuda" else "cpu")
    kw = dict(split=split, train=train, rank=rank, world_size=world_size, seed=seed, device=device)
    if cfg.backend == "dali":
        from pipeline.loader_dali import DaliLoader
        return DaliLoader(cfg, shards, **kw)
    if cfg.backend == "reference":
        from pipeline.loader_reference import ReferenceLoader
        return ReferenceLoader(cfg, shards, **kw)
    raise ValueError(f"unknown loader backend {cfg.backend!r}")
