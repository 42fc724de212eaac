"""The shard list of one split, checked before any loader touches it, and the per-rank, per-epoch reading plan.

Both loaders read the same plan, so they see the same samples in the same order:
- `ShardSet.open(shard_dir_or_urls, split)` finds `{split}-*.tar` (or takes a list of tar paths), reads each DALI index
  (`.idx` beside the tar, docs/ARCHITECTURE.md section 2), and refuses, with one line naming the file, a missing or
  unreadable index, a tar shorter than its index says (truncated), or a split with no usable sample. Samples that lack
  their image, audio or json are counted and skipped by both loaders (DALI: missing_component_behavior='skip').
- `plan(rank, world_size, epoch, batch_size, train)`: samples are split by position into `world_size` contiguous
  ranges as DALI's reader splits them (range r = [floor(r*N/W), floor((r+1)*N/W)) over all indexed samples); in epoch
  e rank r reads range (r + e) % W, so every rank sees other data each epoch. Training: every rank gets
  floor(min over ranges of usable samples / B) full batches (equal steps on every rank, no DDP hang). Evaluation:
  every sample of the rank's range once, the last batch possibly partial.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from pipeline.shard.format import AUDIO_EXTS, IMAGE_EXT, META_EXT, ShardError


@dataclass(frozen=True)
class IndexedSample:
    key: str
    usable: bool        # has its image, audio and json members


@dataclass(frozen=True)
class EpochPlan:
    shard_id: int       # the range this rank reads in this epoch
    num_shards: int
    begin: int          # [begin, end) over ShardSet.samples
    end: int
    usable: int         # usable samples in the range
    num_batches: int
    batch_size: int
    drop_last: bool


def _parse_index(idx: Path, tar: Path) -> list[IndexedSample]:
    try:
        lines = idx.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ShardError(f"{idx}: cannot read the DALI index ({exc})") from None
    if not lines or not lines[0].startswith("v1.") or len(lines[0].split()) != 2:
        raise ShardError(f"{idx}: not a DALI webdataset index (bad header {lines[0][:40]!r})" if lines
                         else f"{idx}: empty DALI index")
    try:
        expected = int(lines[0].split()[1])
    except ValueError:
        raise ShardError(f"{idx}: bad sample count in the header {lines[0]!r}") from None
    rows = [ln for ln in lines[1:] if ln.strip()]
    if len(rows) != expected:
        raise ShardError(f"{idx}: header says {expected} samples, the index lists {len(rows)}")
    size = tar.stat().st_size
    out = []
    for n, row in enumerate(rows, start=2):
        parts = row.split()
        if len(parts) % 4:
            raise ShardError(f"{idx}:{n}: expected groups of 'ext offset size name'")
        exts, key, end = set(), None, 0
        for i in range(0, len(parts), 4):
            ext, offset, length, name = parts[i:i + 4]
            try:
                end = max(end, int(offset) + int(length))
            except ValueError:
                raise ShardError(f"{idx}:{n}: bad offset or size in {parts[i:i + 4]}") from None
            exts.add(ext)
            key = name.split(".", 1)[0]
        if end > size:
            raise ShardError(f"{tar}: truncated ({size} bytes, its index needs {end}); re-run the sharder")
        usable = IMAGE_EXT in exts and META_EXT in exts and any(e in exts for e in AUDIO_EXTS)
        out.append(IndexedSample(key=key or "", usable=usable))
    return out


@dataclass
class ShardSet:
    tars: list[Path]
    indexes: list[Path]
    samples: list[IndexedSample]
    tar_offsets: list[int]   # global position of each tar's first sample

    @classmethod
    def open(cls, shard_dir_or_urls: str | os.PathLike | list, split: str) -> "ShardSet":
        if isinstance(shard_dir_or_urls, (list, tuple)):
            tars = [Path(t) for t in shard_dir_or_urls]
            where = "the given tar list"
        else:
            root = Path(shard_dir_or_urls)
            if not root.is_dir():
                raise ShardError(f"{root}: no such shard folder")
            tars = sorted(root.glob(f"{split}-*.tar"))
            where = str(root)
        if not tars:
            raise ShardError(f"{where}: no {split}-*.tar shards")
        samples: list[IndexedSample] = []
        offsets, indexes = [], []
        for tar in tars:
            idx = tar.with_suffix(".idx")
            if not tar.is_file():
                raise ShardError(f"{tar}: no such shard")
            if not idx.is_file():
                raise ShardError(f"{idx}: missing DALI index (make it with wds2idx {tar} {idx})")
            offsets.append(len(samples))
            indexes.append(idx)
            samples.extend(_parse_index(idx, tar))
        if not any(s.usable for s in samples):
            raise ShardError(f"{where}: no {split} sample has its image, audio and json members")
        return cls(tars=tars, indexes=indexes, samples=samples, tar_offsets=offsets)

    @property
    def skipped(self) -> int:
        """Samples without an image or audio member (skipped by both loaders)."""
        return sum(not s.usable for s in self.samples)

    def range_of(self, shard_id: int, num_shards: int) -> tuple[int, int]:
        n = len(self.samples)
        return shard_id * n // num_shards, (shard_id + 1) * n // num_shards

    def usable_in(self, begin: int, end: int) -> int:
        return sum(s.usable for s in self.samples[begin:end])

    def plan(self, rank: int, world_size: int, epoch: int, batch_size: int, train: bool) -> EpochPlan:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside world size {world_size}")
        shard_id = (rank + epoch) % world_size
        begin, end = self.range_of(shard_id, world_size)
        usable = self.usable_in(begin, end)
        if train:
            least = min(self.usable_in(*self.range_of(r, world_size)) for r in range(world_size))
            num_batches = least // batch_size
            if num_batches == 0:
                raise ShardError(f"{self.tars[0].parent}: a rank holds only {least} usable samples, fewer than one "
                                 f"batch of {batch_size}; use a smaller batch or fewer ranks")
        else:
            num_batches = -(-usable // batch_size)
        return EpochPlan(shard_id=shard_id, num_shards=world_size, begin=begin, end=end, usable=usable,
                         num_batches=num_batches, batch_size=batch_size, drop_last=train)
