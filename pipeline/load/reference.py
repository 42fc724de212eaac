"""The reference loader: the `webdataset` library (`ShardSet.stream`), soundfile and torchvision decoders
(pipeline.load.decode) and torch ops (pipeline.load.features, pipeline.load.augment) in a standard torch DataLoader.
Slower than DALI; it is the readable definition the DALI loader is checked against. A damaged sample is one line
naming the tar and the sample, also when a DataLoader worker finds it.

Every DataLoader worker streams the rank's tars with webdataset's tar reader, orders the samples of the epoch's plan
the same way (stored order; training: a seeded shuffle buffer), and decodes only the batches it owns (batch b goes to
worker b mod W), so the DataLoader's round-robin returns the batches in plan order whatever the worker count.
Per-sample randomness (audio window, image augmentation) is seeded by (seed, epoch, rank, position in the epoch), so
a resumed epoch, which skips the consumed batches before decoding anything, reproduces the remaining batches exactly.
"""
from __future__ import annotations

import random

import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from pipeline.common import procs
from pipeline.load import augment, decode, features
from pipeline.load.contract import LoaderBase
from pipeline.load.shards import EpochPlan
from pipeline.shard.format import ShardError


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


class _EpochStream(IterableDataset):
    def __init__(self, loader: "ReferenceLoader", plan: EpochPlan, start: int):
        self.loader, self.plan, self.start = loader, plan, start

    def __iter__(self):
        ld, plan = self.loader, self.plan
        info = get_worker_info()
        wid, nw = (info.id, info.num_workers) if info else (0, 1)
        items = ld.shards.stream(plan.begin, plan.end)
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
        meta, wave, img = decode.decode_sample(raw)
        key, label = str(meta["id"]), int(meta["class_index"])
        g = features.position_generator(self.seed, self.epoch, self.rank, position, 1)
        mode = self.cfg.audio_window if self.train else "center"
        wave = features.clip_to_input(wave, self.window_samples, self.input_samples, mode, g)
        mel = features.mel_power(wave, db=True).unsqueeze(0)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(torch.randint(0, 2**62, (1,), generator=g)))
            image = self.transform(img)
        return image, mel, label, key

    def _raw_batches(self, plan, start, resume):
        workers = procs.default_workers(self.cfg.workers)
        context = procs.forkserver_context("pipeline.load.reference") if workers else None
        dl = DataLoader(_EpochStream(self, plan, start), batch_size=plan.batch_size, num_workers=workers,
                        drop_last=False, prefetch_factor=2 if workers else None,
                        pin_memory=self.device.type == "cuda" or self.pin_memory, multiprocessing_context=context)
        try:
            for image, mel, label, keys in dl:
                yield (image.to(self.device, non_blocking=True), mel.to(self.device, non_blocking=True),
                       label.to(self.device), list(keys))
        except ShardError as exc:    # from a worker, wrapped in the worker's traceback: keep its own one line
            raise ShardError(_own_message(exc)) from None


def _own_message(exc: ShardError) -> str:
    """The message a worker's ShardError was raised with (DataLoader re-raises it with the worker's traceback)."""
    text = str(exc)
    if "Original Traceback" not in text:
        return text
    last = [ln for ln in text.splitlines() if ln.strip()][-1]
    return last.split("ShardError: ", 1)[-1]
