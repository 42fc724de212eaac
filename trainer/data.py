"""The trainer's data sources: the project loaders over shards (`pipeline.load`) or seeded random tensors.

`source: shards` builds `pipeline.load.build.build_loader` for the train and val splits with the per-process
micro-batch.
`source: random` yields seeded random images / log-mels (no files, no decoding): for benchmarks and loop tests that
must not depend on the data pipeline. Both expose what the loop needs: iteration over one epoch of batches with
`.image`, `.logmel`, `.label`, `.key`, plus `set_epoch`, `state_dict` and `load_state_dict` (mid-epoch resume).
`DevicePrefetch` puts the batches on the training device.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from pipeline.common.config import ConfigError
from pipeline.load.build import build_loader
from pipeline.shard.format import ShardError
from trainer.config import TrainConfig


@dataclass
class RandomBatch:
    image: torch.Tensor
    logmel: torch.Tensor
    label: torch.Tensor
    key: list[str]


class RandomBatches:
    """`num_batches` per epoch of random tensors; batch k of epoch e on rank r depends only on (seed, r, e, k)."""

    def __init__(self, batch: int, image_size: int, frames: int, num_batches: int, seed: int, rank: int):
        self.batch, self.image_size, self.frames, self.num_batches = batch, image_size, frames, num_batches
        self.seed, self.rank = seed, rank
        self.epoch = 0
        self.index = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.index = 0

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "index": self.index}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.index = int(state["epoch"]), int(state["index"])

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self):
        while self.index < self.num_batches:
            g = torch.Generator().manual_seed(hash((self.seed, self.rank, self.epoch, self.index)) % (2**62))
            b = self.batch
            image = torch.randn(b, 3, self.image_size, self.image_size, generator=g)
            logmel = torch.randn(b, 1, 257, self.frames, generator=g) * 20.0 - 30.0
            label = torch.randint(0, 10, (b,), generator=g)
            keys = [f"random_{self.rank}_{self.epoch}_{self.index}_{i}" for i in range(b)]
            self.index += 1
            yield RandomBatch(image, logmel, label, keys)


class DevicePrefetch:
    """The batches of `loader` on `device`. On a GPU, a batch still on the host (pinned by the loader) is copied on a
    side CUDA stream when the trainer asks for it, which is after the previous step's kernels were queued, so the
    copy runs while the GPU computes that step; the training stream waits for the copy only where it uses the batch.
    Batches the DALI GPU graph made are on the device already. No batch is read ahead of the trainer's request, so
    the loader's position (checkpoints) is exactly the batches handed out. On the CPU: the batches as they come."""

    def __init__(self, loader, device: torch.device):
        self.loader, self.device = loader, torch.device(device)

    def __iter__(self):
        if self.device.type != "cuda":
            yield from self.loader
            return
        stream = torch.cuda.Stream(self.device)
        for batch in self.loader:
            with torch.cuda.stream(stream):
                moved = {k: v.to(self.device, non_blocking=True) for k, v in _tensors(batch).items()}
            current = torch.cuda.current_stream(self.device)
            current.wait_stream(stream)
            for v in moved.values():
                v.record_stream(current)     # allocated on the side stream, freed after the step's use
            yield dataclasses.replace(batch, **moved)


def _tensors(batch) -> dict[str, torch.Tensor]:
    return {f.name: getattr(batch, f.name) for f in dataclasses.fields(batch)
            if isinstance(getattr(batch, f.name), torch.Tensor)}


def micro_batch(cfg: TrainConfig, world_size: int) -> int:
    """Per-process samples per micro-step: global batch / (processes x accumulation steps), which must divide."""
    div = world_size * cfg.optim.grad_accum
    if cfg.optim.batch_size % div:
        raise ConfigError(f"optim.batch_size={cfg.optim.batch_size} is not divisible by processes ({world_size}) x "
                         f"optim.grad_accum ({cfg.optim.grad_accum})")
    return cfg.optim.batch_size // div


def build_loaders(cfg: TrainConfig, rank: int, world_size: int, device: torch.device):
    """(train loader, val loader or None) for this process."""
    batch = micro_batch(cfg, world_size)
    d = cfg.data
    if d.source == "random":
        train = RandomBatches(batch, d.random_image_size, d.random_frames, d.random_batches, cfg.seed, rank)
        val = RandomBatches(batch, d.random_image_size, d.random_frames, max(1, d.random_batches // 4),
                            cfg.seed + 1, rank)
        return train, val
    lcfg = dataclasses.replace(d.loader, batch_size=batch)
    loader_device = device if (device.type == "cuda" and lcfg.device == "cuda") else torch.device("cpu")
    kw = dict(rank=rank, world_size=world_size, seed=cfg.seed, device=loader_device,
              pin_memory=device.type == "cuda" and loader_device.type == "cpu")
    try:
        train = build_loader(lcfg, d.shard_dir, split=d.train_split, train=True, **kw)
        val = build_loader(lcfg, d.shard_dir, split=d.val_split, train=False, **kw) if d.val_split else None
    except ShardError as exc:
        raise ConfigError(f"data.shard_dir={d.shard_dir}: {exc}") from None
    return train, val
