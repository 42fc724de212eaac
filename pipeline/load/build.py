"""`build_loader`: the loader of `LoaderConfig.backend` (DALI or reference) over the shards of one split.

`build_loader(cfg, shard_dir_or_urls, split=..., train=..., rank, world_size, seed, device)` opens and checks the
split's shards (`pipeline.load.shards`), then builds the backend; both follow the contract of `pipeline.load.contract`.
The backends are imported when chosen, so a process that uses one does not pay for the other's imports.
"""
from __future__ import annotations

import torch

from pipeline.load.contract import LoaderBase, LoaderConfig
from pipeline.load.shards import ShardSet


def build_loader(cfg: LoaderConfig, shard_dir_or_urls, *, split: str = "train", train: bool = True, rank: int = 0,
                 world_size: int = 1, seed: int = 0, device: torch.device | str | None = None,
                 pin_memory: bool = False) -> LoaderBase:
    """The loader of `cfg.backend` over the `split` shards of a folder (or a list of tar paths); `pin_memory`: CPU
    batches in pinned memory, for a consumer that copies them to a GPU without waiting."""
    shards = ShardSet.open(shard_dir_or_urls, split)
    device = device if device is not None else ("cuda" if cfg.device == "cuda" else "cpu")
    kw = dict(split=split, train=train, rank=rank, world_size=world_size, seed=seed, device=device,
              pin_memory=pin_memory)
    if cfg.backend == "dali":
        from pipeline.load.dali import DaliLoader
        return DaliLoader(cfg, shards, **kw)
    if cfg.backend == "reference":
        from pipeline.load.reference import ReferenceLoader
        return ReferenceLoader(cfg, shards, **kw)
    raise ValueError(f"unknown loader backend {cfg.backend!r}")
