"""The DALI loader: `fn.readers.webdataset` over the shard list with its index files, one graph for the CPU
(`device_id=None`) and the GPU (`device='mixed'` JPEG decoding, the images and the waveform handed over on the GPU)
chosen by `LoaderConfig.device`, then the torch side of each batch on the same device.

Graph per sample (train with augment / evaluation):
- image: decoders.image_random_crop (area 0.3-1, aspect 3/4-4/3, only the crop is decoded) when training with
  augmentation, else decoders.image, plus the per-sample draws of the rest (flip p 0.5; blur p 0.5 with sigma
  U(0.1, 2); colour jitter p 0.8 with factors U(0.6, 1.4) and hue U(-0.1, 0.1) turns; grayscale p 0.2). In torch, on
  the loader's device, `augment.train_batch` resizes each crop to S x S, flips, blurs, jitters and normalizes the
  batch, and `augment.eval_batch` resizes each frame as the reference loader does (square, bicubic, antialias, on
  float). These run in torch rather than as DALI's resize, gaussian_blur and colour operators because on the CPU the
  torch versions cost less (the figures: README, loader throughput).
- audio: decoders.audio (CPU-only in DALI) -> the window (centred, or uniform start when training with
  audio_window=random), zero-padded to the window length when the clip is shorter, plus its real length. In torch,
  on the loader's device, `features.mel_power` tiles each window to the input length exactly as SSL-TIE does (the
  reference loader's `features.tile`) and computes the log-mel in dB (the one definition both loaders use), then
  `LoaderBase` (pipeline.load.contract) adds SpecAugment.

Epochs: a fresh pipeline per epoch, reading range (rank + epoch) % W of the global sample list (shard_id is the
global rank's range, num_shards = world size, pad_last_batch + reader_name), shuffled (training) with a buffer
seeded from (seed, epoch, rank); the loader stops after the plan's number of batches, so all ranks take equal steps.
Mid-epoch resume uses DALI's pipeline checkpointing (reader position + random state).

Threads: DALI runs on `workers` threads; the torch side of each batch runs on a pool of `workers` threads too (one
on the GPU, where it only queues kernels), a batch per thread, handed out in order with the DALI checkpoint taken
right after that batch left the pipeline. On the CPU the two sides then share the cores instead of the torch side
waiting on one thread.
"""
from __future__ import annotations

import base64
import json
from collections import deque
from concurrent.futures import ThreadPoolExecutor

import nvidia.dali.math as dmath
import torch
from nvidia.dali import fn, pipeline_def, types
from nvidia.dali.plugin.base_iterator import LastBatchPolicy
from nvidia.dali.plugin.pytorch import DALIRaggedIterator

from pipeline.common.procs import default_workers
from pipeline.load import augment, decode, features
from pipeline.load.contract import LoaderBase
from pipeline.load.shards import EpochPlan
from pipeline.shard.format import ShardError

READER = "Reader"
OUTPUTS = ["image", "window", "json", "window_length", "draws"]
OUTPUT_TYPES = [DALIRaggedIterator.SPARSE_LIST_TAG] + [DALIRaggedIterator.DENSE_TAG] * 4   # images: one per size


def _reason(exc: Exception) -> str:
    """The one informative line of a DALI error (the text after 'encountered:'), for a one-line message."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    after = [ln for i, ln in enumerate(lines) if i and lines[i - 1].endswith("encountered:")]
    return (after or lines or [type(exc).__name__])[0]


def _uniform(lo: float, hi: float):
    return fn.random.uniform(range=[lo, hi])


def _coin(p: float):
    return fn.cast(fn.random.coin_flip(probability=p), dtype=types.FLOAT)


def _image_draws():
    """moco_v2's draws per sample `[augment.DRAWS]` (brightness, contrast, saturation, hue in turns, grayscale 0/1,
    blur sigma, flip 0/1): jitter with p 0.8 (factors U(0.6, 1.4), hue U(-0.1, 0.1)), otherwise identity;
    grayscale with p 0.2; blur with p 0.5 (sigma U(0.1, 2)), otherwise sigma 0; flip with p 0.5.
    `augment.train_batch` applies them in torch."""
    on, gray, blur = _coin(augment.JITTER_P), _coin(augment.GRAY_P), _coin(augment.BLUR_P)
    b, c, s, h = augment.JITTER
    return fn.stack(1.0 + on * _uniform(-b, b), 1.0 + on * _uniform(-c, c), 1.0 + on * _uniform(-s, s),
                    on * _uniform(-h, h), gray, blur * _uniform(*augment.BLUR_SIGMA), _coin(augment.FLIP_P))


@pipeline_def
def _graph(*, tars, indexes, shard_id, num_shards, shuffle, shuffle_buffer, reader_seed, train_aug, random_window,
           window_samples, gpu):
    js, jpg, audio = fn.readers.webdataset(
        paths=tars, index_paths=indexes, ext=["json", "jpg", "flac;wav"], missing_component_behavior="skip",
        shard_id=shard_id, num_shards=num_shards, pad_last_batch=True, random_shuffle=shuffle,
        initial_fill=shuffle_buffer, seed=reader_seed, name=READER)
    decode_device = "mixed" if gpu else "cpu"
    if train_aug:
        lo, hi = augment.CROP_SCALE
        img = fn.decoders.image_random_crop(jpg, device=decode_device, output_type=types.RGB, random_area=[lo, hi],
                                            random_aspect_ratio=[3 / 4, 4 / 3], num_attempts=10)
        draws = _image_draws()
    else:
        img = fn.decoders.image(jpg, device=decode_device, output_type=types.RGB)
        draws = fn.constant(fdata=0.0)  # unused: nothing is drawn for evaluation

    wave, _ = fn.decoders.audio(audio, dtype=types.FLOAT, downmix=True)
    length = wave.shape(dtype=types.INT64)[0]
    win = dmath.min(length, window_samples)
    room = length - win
    if random_window:
        start = fn.cast(dmath.floor(fn.random.uniform(range=[0.0, 1.0])
                                    * fn.cast(room + 1, dtype=types.FLOAT)), dtype=types.INT64)
        start = dmath.min(start, room)
    else:
        start = room // 2
    piece = fn.slice(wave, start, fn.constant(idata=window_samples, dtype=types.INT64), axes=[0],
                     out_of_bounds_policy="pad")  # zeros past a short clip
    if gpu:
        piece = piece.gpu()
    return img, piece, fn.pad(js, fill_value=0), win, draws


class DaliLoader(LoaderBase):
    def __init__(self, cfg, shards, **kw):
        super().__init__(cfg, shards, **kw)
        self.gpu = cfg.device == "cuda"
        if self.gpu and not torch.cuda.is_available():
            raise ValueError("loader device 'cuda' asked for, but no GPU is visible")
        self._checkpoint: bytes | str | None = None   # the DALI iterator's, after the last batch handed out

    def _pipeline(self, plan: EpochPlan, checkpoint: bytes | None):
        pipe = _graph(
            batch_size=plan.batch_size, num_threads=default_workers(self.cfg.workers),
            device_id=torch.cuda.current_device() if self.gpu else None,
            seed=features.mix_seed(self.seed, self.epoch, self.rank, 2) % (2**31),
            prefetch_queue_depth=2, enable_checkpointing=True, checkpoint=checkpoint, exec_dynamic=self.gpu,
            tars=[str(t) for t in self.shards.tars], indexes=[str(i) for i in self.shards.indexes],
            shard_id=plan.shard_id, num_shards=plan.num_shards, shuffle=self.train,
            shuffle_buffer=self.cfg.shuffle_buffer,
            reader_seed=features.mix_seed(self.seed, self.epoch, self.rank, 3) % (2**31),
            train_aug=self.augment,
            random_window=self.train and self.cfg.audio_window == "random",
            window_samples=self.window_samples, gpu=self.gpu)
        pipe.build()
        return pipe

    def state_dict(self) -> dict:
        state = super().state_dict()
        if self._checkpoint is not None and 0 < self.consumed:  # JSON-safe: trainers save this dict in state.json
            cp = self._checkpoint
            state["dali"] = base64.b64encode(cp if isinstance(cp, bytes) else cp.encode()).decode("ascii")
        return state

    def _next_outputs(self, iterator: DALIRaggedIterator, plan: EpochPlan) -> dict:
        """The pipeline's next batch (the iterator's tensors are new ones each batch, or DLPack views DALI keeps
        alive, so the torch side may use them while DALI runs on)."""
        try:
            out = next(iterator)[0]
        except StopIteration:
            raise ShardError(f"{self.shards.tars[0].parent}: DALI ran out of samples before batch "
                             f"{plan.num_batches} of the plan; the index files do not match the tars") from None
        except RuntimeError as exc:   # DALI's message names no file: find the sample with the Python decoders
            culprit = decode.first_damaged(self.shards, plan.begin, plan.end)
            raise ShardError(culprit or f"{self.shards.tars[0].parent}: DALI failed on a sample: {_reason(exc)}") \
                from None
        return out

    def _tensors(self, out: dict):
        """(image, log-mel in dB, label, keys) of one batch of pipeline outputs: the torch side of the graph."""
        metas = [json.loads(bytes(j.numpy()).rstrip(b"\0")) for j in out["json"]]
        size = self.cfg.image_size
        frames = [f.to(self.device) for f in out["image"]]        # no copy where DALI decoded on this device
        image = augment.train_batch(frames, out["draws"], size) if self.augment else augment.eval_batch(frames, size)
        mel = features.mel_power(out["window"].to(self.device), out["window_length"].reshape(-1),
                                 self.input_samples, db=True).unsqueeze(1)
        label = torch.tensor([int(m["class_index"]) for m in metas], dtype=torch.int64, device=self.device)
        return image, mel, label, [str(m["id"]) for m in metas]

    def _raw_batches(self, plan, start, resume):
        checkpoint = base64.b64decode(resume["dali"]) if resume and "dali" in resume else None
        if start and checkpoint is None:
            raise ValueError("a mid-epoch DALI loader state needs its 'dali' checkpoint")
        self._checkpoint = checkpoint
        try:
            pipe = self._pipeline(plan, checkpoint)
            iterator = DALIRaggedIterator(pipe, OUTPUTS, reader_name=READER, output_types=OUTPUT_TYPES,
                                          last_batch_policy=LastBatchPolicy.PARTIAL, auto_reset=False)
        except RuntimeError as exc:   # the first batches are read while the pipeline is built
            culprit = decode.first_damaged(self.shards, plan.begin, plan.end)
            raise ShardError(culprit or f"{self.shards.tars[0].parent}: DALI cannot open the shards: {_reason(exc)}") \
                from None
        threads = 1 if self.gpu else default_workers(self.cfg.workers)
        pending: deque = deque()   # (future of _tensors, the iterator's checkpoint after that batch), in order
        with ThreadPoolExecutor(threads, thread_name_prefix="dali-torch") as pool:
            for _ in range(start, plan.num_batches):
                out = self._next_outputs(iterator, plan)
                pending.append((pool.submit(self._tensors, out), iterator.checkpoints()[0]))
                if len(pending) > threads:
                    yield self._hand_out(pending)
            while pending:
                yield self._hand_out(pending)

    def _hand_out(self, pending: deque):
        future, self._checkpoint = pending.popleft()
        return future.result()
