"""The reference loader: the `webdataset` library + soundfile + torch ops (pipeline.load.features,
pipeline.load.augment) in a standard torch DataLoader. Slower than DALI; it is the readable definition the DALI loader is checked against.

Every DataLoader worker streams the rank's tars with webdataset's tar reader, orders the samples of the epoch's plan
the same way (stored order; training: a seeded shuffle buffer), and decodes only the batches it owns (batch b goes to
worker b mod W), so the DataLoader's round-robin returns the batches in plan order whatever the worker count.
Per-sample randomness (audio window, image augmentation) is seeded by (seed, epoch, rank, position in the epoch), so
a resumed epoch, which skips the consumed batches before decoding anything, reproduces the remaining batches exactly.
"""
from __future__ import annotations

import io
import json
import random
import tarfile
from typing import Iterator

import numpy as np
import soundfile as sf
import torch
import webdataset as wds
from torch.utils.data import DataLoader, IterableDataset, get_worker_info
from torchvision.io import ImageReadMode, decode_jpeg

from pipeline.common import procs
from pipeline.load import augment, features
from pipeline.load.contract import LoaderBase
from pipeline.load.shards import EpochPlan
from pipeline.shard.format import AUDIO_EXTS, IMAGE_EXT, ShardError


def shuffle_buffer(items, size: int, rng: random.Random):
    """A deterministic buffer shuffle (webdataset-style): fill `size`, then emit a random element and refill."""
    buf = []
    for item in items:
        buf.append(item)
        if len(buf) >= size:
            k = rng.randrange(len(buf))
            buf[k], buf[-1] = buf[-1], buf[k]
            yield buf.pop()
    while buf:
        k = rng.randrange(len(buf))
        buf[k], buf[-1] = buf[-1], buf[k]
        yield buf.pop()


def decode_audio(data: bytes, where: str) -> torch.Tensor:
    """FLAC/WAV bytes -> float32 mono waveform in [-1, 1] (channels averaged, as DALI's downmix)."""
    try:
        wave, _ = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        raise ShardError(f"{where}: cannot decode the audio ({exc})") from None
    return torch.from_numpy(np.ascontiguousarray(wave.mean(axis=1)))


def decode_image(data: bytes, where: str) -> torch.Tensor:
    try:
        return decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB)
    except RuntimeError as exc:
        raise ShardError(f"{where}: cannot decode the JPEG ({exc})") from None


class _EpochStream(IterableDataset):
    def __init__(self, loader: "ReferenceLoader", plan: EpochPlan, start: int):
        self.loader, self.plan, self.start = loader, plan, start

    def _samples_in_range(self) -> Iterator[tuple[int, dict]]:
        shards, plan = self.loader.shards, self.plan
        first = max(t for t, off in enumerate(shards.tar_offsets) if off <= plan.begin)
        urls = [str(shards.tars[t]) for t in range(first, len(shards.tars)) if shards.tar_offsets[t] < plan.end]
        tar_pos = {str(p): t for t, p in enumerate(shards.tars)}
        counts: dict[str, int] = {}
        stream = wds.DataPipeline(wds.SimpleShardList(urls), wds.tarfile_to_samples())
        try:
            for raw in stream:
                url = raw["__url__"]
                n = counts.get(url, 0)
                counts[url] = n + 1
                pos = shards.tar_offsets[tar_pos[url]] + n
                if pos >= plan.end:
                    return
                expected = shards.samples[pos] if pos < len(shards.samples) else None
                if expected is None or expected.key != raw["__key__"]:
                    raise ShardError(f"{url}: sample {n} is {raw['__key__']!r}, its index says "
                                     f"{expected.key if expected else 'nothing'}; re-make the index")
                if pos >= plan.begin and expected.usable:
                    yield pos, raw
        except (tarfile.TarError, OSError, ValueError) as exc:
            if isinstance(exc, ShardError):
                raise
            raise ShardError(f"{urls}: unreadable shard ({exc})") from None

    def __iter__(self):
        ld, plan = self.loader, self.plan
        info = get_worker_info()
        wid, nw = (info.id, info.num_workers) if info else (0, 1)
        items = self._samples_in_range()
        if ld.train:
            items = shuffle_buffer(items, ld.cfg.shuffle_buffer,
                                   random.Random(features.mix_seed(ld.seed, ld.epoch, ld.rank)))
        limit = plan.num_batches * plan.batch_size
        for p, (_, raw) in enumerate(items):
            if p >= limit:
                return
            b = p // plan.batch_size
            if b < self.start or (b - self.start) % nw != wid:
                continue
            yield ld.process(raw, p)


class ReferenceLoader(LoaderBase):
    def __init__(self, cfg, shards, **kw):
        super().__init__(cfg, shards, **kw)
        self.transform = augment.image_transform(cfg.image_size, self.augment)

    def process(self, raw: dict, position: int) -> tuple[torch.Tensor, torch.Tensor, int, str]:
        where = f"{raw['__url__']}:{raw['__key__']}"
        try:
            meta = json.loads(raw["json"])
            key, label = str(meta["id"]), int(meta["class_index"])
        except (KeyError, ValueError) as exc:
            raise ShardError(f"{where}: bad or missing json member ({exc})") from None
        audio = next(raw[e] for e in AUDIO_EXTS if e in raw)
        wave = decode_audio(audio, where)
        g = features.position_generator(self.seed, self.epoch, self.rank, position, 1)
        mode = self.cfg.audio_window if self.train else "center"
        wave = features.clip_to_input(wave, self.window_samples, self.input_samples, mode, g)
        mel = features.mel_power(wave, db=True).unsqueeze(0)
        img = decode_image(raw[IMAGE_EXT], where)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(torch.randint(0, 2**62, (1,), generator=g)))
            image = self.transform(img)
        return image, mel, label, key

    def _raw_batches(self, plan, start, resume):
        workers = procs.default_workers(self.cfg.workers)
        context = procs.forkserver_context("pipeline.load.reference") if workers else None
        dl = DataLoader(_EpochStream(self, plan, start), batch_size=plan.batch_size, num_workers=workers,
                        drop_last=False, prefetch_factor=2 if workers else None,
                        pin_memory=self.device.type == "cuda", multiprocessing_context=context)
        for image, mel, label, keys in dl:
            yield (image.to(self.device, non_blocking=True), mel.to(self.device, non_blocking=True),
                   label.to(self.device), list(keys))
