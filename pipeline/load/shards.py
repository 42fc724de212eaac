"""The shard list of one split, checked before any loader touches it, and the per-rank, per-epoch reading plan.

Both loaders read the same plan, so they see the same samples in the same order:
- `ShardSet.open(shard_dir_or_urls, split)` finds `{split}-*.tar` (or takes a list of tar paths), reads each DALI index
  (`.idx` beside the tar, docs/ARCHITECTURE.md section 2), and refuses, with one line naming the file, a missing or
  unreadable index, a tar shorter than its index says (truncated), or a split with no usable sample. Samples that lack
  their image, audio or json are counted and skipped by both loaders (DALI: missing_component_behavior='skip').
  A sample whose member names are paths (`../../etc/x.jpg`, `a/b.jpg`: never written by the sharder, whose keys are
  clip ids) is left out of the set, counted in `skipped`, named in `unsafe` and in a warning; DALI then reads a copy of
  that tar's index without it (in a temporary folder), the reference loader passes it over, so neither reads it.
- `plan(rank, world_size, epoch, batch_size, train)`: samples are split by position into `world_size` contiguous
  ranges as DALI's reader splits them (range r = [floor(r*N/W), floor((r+1)*N/W)) over all indexed samples); in epoch
  e rank r reads range (r + e) % W, so every rank sees other data each epoch. Training: every rank gets
  floor(min over ranges of usable samples / B) full batches (equal steps on every rank, no DDP hang). Evaluation:
  every sample of the rank's range once, the last batch possibly partial.
"""
from __future__ import annotations

import atexit
import json
import os
import shutil
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import webdataset as wds

from pipeline.shard.format import AUDIO_EXTS, IMAGE_EXT, META_EXT, SAMPLE_RATE, ShardError


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


def unsafe_key(key: str) -> bool:
    """A sample key that is a path (a folder part, '..', absolute), not a plain name."""
    return "/" in key or "\\" in key or key.startswith(".") or ".." in key


def _min_audio_samples(root: Path) -> int:
    """The fewest audio samples a clip of the folder has, from manifest.json's `min_duration` (the sharder's floor,
    less its 10 ms of slack); 1 where the manifest is absent, unreadable or older than that field."""
    try:
        seconds = float(json.loads((root / "manifest.json").read_text())["min_duration"])
    except (OSError, ValueError, KeyError, TypeError):
        return 1
    return max(1, int(seconds * SAMPLE_RATE) - SAMPLE_RATE // 100)


def _parse_index(idx: Path, tar: Path) -> tuple[list[IndexedSample], list[str], list[str]]:
    """(samples with plain keys, member names of the samples left out as unsafe, the index lines to keep)."""
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
    out, unsafe, kept = [], [], [lines[0]]
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
            folder, _, base = name.rpartition("/")
            key = (folder + "/" if folder else "") + base.split(".", 1)[0]    # webdataset's key of the member
        if end > size:
            raise ShardError(f"{tar}: truncated ({size} bytes, its index needs {end}); re-run the sharder")
        if key is None or unsafe_key(key):
            unsafe.append(key or parts[3])
            continue
        usable = IMAGE_EXT in exts and META_EXT in exts and any(e in exts for e in AUDIO_EXTS)
        out.append(IndexedSample(key=key, usable=usable))
        kept.append(row)
    kept[0] = f"{lines[0].split()[0]} {len(out)}"
    return out, unsafe, kept


_COPIES: list[str] = []


def _index_copy(idx: Path, lines: list[str]) -> Path:
    """A copy of a DALI index holding `lines`, in a temporary folder removed when the process ends."""
    if not _COPIES:
        _COPIES.append(tempfile.mkdtemp(prefix="ssl-san-index-"))
        atexit.register(shutil.rmtree, _COPIES[0], True)
    folder = Path(tempfile.mkdtemp(dir=_COPIES[0]))
    copy = folder / idx.name
    copy.write_text("\n".join(lines) + "\n")
    return copy


@dataclass
class ShardSet:
    tars: list[Path]
    indexes: list[Path]      # what DALI reads: the tar's own index, or a copy without the unsafe samples
    samples: list[IndexedSample]
    tar_offsets: list[int]   # global position of each tar's first sample
    unsafe: list[str]        # "tar: key" of the samples left out because their member names are paths
    min_audio_samples: int = 1   # no sample has less audio: from the folder's manifest (`min_duration`), else 1

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
        offsets, indexes, unsafe = [], [], []
        for tar in tars:
            idx = tar.with_suffix(".idx")
            if not tar.is_file():
                raise ShardError(f"{tar}: no such shard")
            if not idx.is_file():
                raise ShardError(f"{idx}: missing DALI index (make it with wds2idx {tar} {idx})")
            offsets.append(len(samples))
            found, left_out, kept = _parse_index(idx, tar)
            if left_out:
                print(f"warning: {tar}: {len(left_out)} samples whose member names are paths are skipped "
                      f"(first: {left_out[0]!r})", file=sys.stderr)
                unsafe.extend(f"{tar}: {k}" for k in left_out)
                idx = _index_copy(idx, kept)
            indexes.append(idx)
            samples.extend(found)
        if not any(s.usable for s in samples):
            raise ShardError(f"{where}: no {split} sample has its image, audio and json members")
        floor = 1 if isinstance(shard_dir_or_urls, (list, tuple)) else _min_audio_samples(Path(shard_dir_or_urls))
        return cls(tars=tars, indexes=indexes, samples=samples, tar_offsets=offsets, unsafe=unsafe,
                   min_audio_samples=floor)

    def check_audio_floor(self, window_lengths: list[int], window_samples: int) -> None:
        """Refuse audio windows shorter than the manifest's `min_duration` allows (a window is the whole clip when
        the clip is shorter than `window_samples`; the DALI graph tiles windows by that floor)."""
        floor = min(self.min_audio_samples, window_samples)
        short = min(window_lengths, default=floor)
        if short < floor:
            raise ShardError(f"{self.tars[0].parent}: a sample has {short} audio samples, fewer than the "
                             f"{self.min_audio_samples} its manifest.json promises (min_duration); re-shard, or "
                             f"remove min_duration from the manifest")

    def stream(self, begin: int, end: int) -> Iterator[tuple[int, dict]]:
        """(position, raw webdataset sample) of every usable sample in positions [begin, end), in stored order, read
        with webdataset's tar reader; a tar that disagrees with its index is a ShardError."""
        first = max(t for t, off in enumerate(self.tar_offsets) if off <= begin)
        urls = [str(self.tars[t]) for t in range(first, len(self.tars)) if self.tar_offsets[t] < end]
        tar_pos = {str(p): t for t, p in enumerate(self.tars)}
        counts: dict[str, int] = {}
        stream = wds.DataPipeline(wds.SimpleShardList(urls), wds.tarfile_to_samples())
        try:
            for raw in stream:
                if unsafe_key(raw["__key__"]):
                    continue                    # left out of the set (and of DALI's copy of the index)
                url = raw["__url__"]
                n = counts.get(url, 0)
                counts[url] = n + 1
                pos = self.tar_offsets[tar_pos[url]] + n
                if pos >= end:
                    return
                expected = self.samples[pos] if pos < len(self.samples) else None
                if expected is None or expected.key != raw["__key__"]:
                    raise ShardError(f"{url}: sample {n} is {raw['__key__']!r}, its index says "
                                     f"{expected.key if expected else 'nothing'}; re-make the index")
                if pos >= begin and expected.usable:
                    yield pos, raw
        except (tarfile.TarError, OSError, ValueError) as exc:
            if isinstance(exc, ShardError):
                raise
            raise ShardError(f"{urls}: unreadable shard ({exc})") from None

    @property
    def skipped(self) -> int:
        """Samples without an image or audio member, or whose member names are paths (skipped by both loaders)."""
        return sum(not s.usable for s in self.samples) + len(self.unsafe)

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
