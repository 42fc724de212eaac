"""The DALI loader: `fn.readers.webdataset` over the shard list with its index files, one graph for the CPU
(`device_id=None`) and the GPU (`device='mixed'` JPEG decoding, GPU image ops, the waveform handed over on the GPU)
chosen by `LoaderConfig.device`.

Graph per sample (train with augment / evaluation):
- image: decoders.image_random_crop (area 0.3-1, aspect 3/4-4/3) + resize S x S (linear, antialias), Gaussian blur
  with p 0.5 (sigma U(0.1, 2)), flip p 0.5, uint8 CHW out, plus the colour draws (jitter p 0.8 with factors
  U(0.6, 1.4) and hue U(-0.1, 0.1) turns, grayscale p 0.2), which `augment.jitter_normalize` applies to the batch in
  torch as one affine colour map per image, clipped once, then ImageNet normalisation. The blur comes before the
  colour map (torchvision blurs after it): the two commute (both linear, the blur's weights sum to 1) except where
  the colour map clips. DALI's per-pixel colour operators (hsv, color_twist, coord_transform) cost the CPU more
  than the batched map (README, loader throughput) / eval: decode + square resize S x S (cubic, antialias, float)
  + normalisation.
- audio: decoders.audio (CPU-only in DALI) -> the window (centred, or uniform start when training with
  audio_window=random), zero-padded to the window length when the clip is shorter, plus its real length. In torch,
  on the loader's device, `features.mel_power` tiles each window to the input length exactly as SSL-TIE does (the
  reference loader's `features.tile`) and computes the log-mel (the one definition both loaders use; on 2 CPU cores
  torch's STFT also costs less than DALI's CPU spectrogram operator), then pipeline.loaders adds SpecAugment and dB.

Epochs: a fresh pipeline per epoch, reading range (rank + epoch) % W of the global sample list (shard_id is the
global rank's range, num_shards = world size, pad_last_batch + reader_name), shuffled (training) with a buffer
seeded from (seed, epoch, rank); the loader stops after the plan's number of batches, so all ranks take equal steps.
Mid-epoch resume uses DALI's pipeline checkpointing (reader position + random state).
"""
from __future__ import annotations

import base64
import json

import torch
from nvidia.dali import fn, pipeline_def, types
import nvidia.dali.math as dmath
from nvidia.dali.plugin.base_iterator import LastBatchPolicy
from nvidia.dali.plugin.pytorch import DALIGenericIterator

from pipeline import augment, features
from pipeline.loaders import LoaderBase, default_workers
from pipeline.shardindex import EpochPlan, ShardError

READER = "Reader"
OUTPUTS = ["image", "window", "json", "window_length", "colour"]


def _reason(exc: Exception) -> str:
    """The one informative line of a DALI error (the text after 'encountered:'), for a one-line message."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    after = [ln for i, ln in enumerate(lines) if i and lines[i - 1].endswith("encountered:")]
    return (after or lines or [type(exc).__name__])[0]


def _uniform(lo: float, hi: float):
    return fn.random.uniform(range=[lo, hi])


def _colour_draws():
    """moco_v2's colour factors per sample `[5]` (brightness, contrast, saturation, hue in turns, grayscale 0/1):
    jitter with p 0.8 (factors U(0.6, 1.4), hue U(-0.1, 0.1)), otherwise identity; grayscale with p 0.2.
    `augment.jitter_normalize` applies them in torch."""
    on = fn.cast(fn.random.coin_flip(probability=augment.JITTER_P), dtype=types.FLOAT)
    gray = fn.cast(fn.random.coin_flip(probability=augment.GRAY_P), dtype=types.FLOAT)
    b, c, s, h = augment.JITTER
    return fn.stack(1.0 + on * _uniform(-b, b), 1.0 + on * _uniform(-c, c), 1.0 + on * _uniform(-s, s),
                    on * _uniform(-h, h), gray)


@pipeline_def(enable_conditionals=True)
def _graph(*, tars, indexes, shard_id, num_shards, shuffle, shuffle_buffer, reader_seed, image_size, train_aug,
           random_window, window_samples, gpu):
    js, jpg, audio = fn.readers.webdataset(
        paths=tars, index_paths=indexes, ext=["json", "jpg", "flac;wav"], missing_component_behavior="skip",
        shard_id=shard_id, num_shards=num_shards, pad_last_batch=True, random_shuffle=shuffle,
        initial_fill=shuffle_buffer, seed=reader_seed, name=READER)
    decode_device = "mixed" if gpu else "cpu"
    if train_aug:
        lo, hi = augment.CROP_SCALE
        img = fn.decoders.image_random_crop(jpg, device=decode_device, output_type=types.RGB, random_area=[lo, hi],
                                            random_aspect_ratio=[3 / 4, 4 / 3], num_attempts=10)
        img = fn.resize(img, resize_x=image_size, resize_y=image_size, interp_type=types.INTERP_LINEAR,
                        antialias=True)
        sigma = _uniform(*augment.BLUR_SIGMA)
        if fn.random.coin_flip(probability=augment.BLUR_P, dtype=types.BOOL):  # only the drawn samples pay
            img = fn.gaussian_blur(img, sigma=sigma)
        flip = fn.random.coin_flip(probability=augment.FLIP_P)
        img = fn.crop_mirror_normalize(img, mirror=flip, output_layout="CHW", dtype=types.UINT8)
        colour = _colour_draws()
    else:
        img = fn.decoders.image(jpg, device=decode_device, output_type=types.RGB)
        img = fn.resize(img, resize_x=image_size, resize_y=image_size, interp_type=types.INTERP_CUBIC,
                        antialias=True, dtype=types.FLOAT)
        img = fn.crop_mirror_normalize(img, mean=[m * 255.0 for m in features.IMAGENET_MEAN],
                                       std=[s * 255.0 for s in features.IMAGENET_STD], output_layout="CHW")
        colour = fn.constant(fdata=0.0)  # unused: evaluation images come out normalized

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
    return img, piece, fn.pad(js, fill_value=0), win, colour


class DaliLoader(LoaderBase):
    def __init__(self, cfg, shards, **kw):
        super().__init__(cfg, shards, **kw)
        self.gpu = cfg.device == "cuda"
        if self.gpu and not torch.cuda.is_available():
            raise ValueError("loader device 'cuda' asked for, but no GPU is visible")
        self._iterator: DALIGenericIterator | None = None

    def _pipeline(self, plan: EpochPlan, checkpoint: bytes | None):
        pipe = _graph(
            batch_size=plan.batch_size, num_threads=default_workers(self.cfg),
            device_id=torch.cuda.current_device() if self.gpu else None,
            seed=features.mix_seed(self.seed, self.epoch, self.rank, 2) % (2**31),
            prefetch_queue_depth=2, enable_checkpointing=True, checkpoint=checkpoint, exec_dynamic=self.gpu,
            tars=[str(t) for t in self.shards.tars], indexes=[str(i) for i in self.shards.indexes],
            shard_id=plan.shard_id, num_shards=plan.num_shards, shuffle=self.train,
            shuffle_buffer=self.cfg.shuffle_buffer,
            reader_seed=features.mix_seed(self.seed, self.epoch, self.rank, 3) % (2**31),
            image_size=self.cfg.image_size, train_aug=self.augment,
            random_window=self.train and self.cfg.audio_window == "random",
            window_samples=self.window_samples, gpu=self.gpu)
        pipe.build()
        return pipe

    def state_dict(self) -> dict:
        state = super().state_dict()
        if self._iterator is not None and 0 < self.consumed:
            cp = self._iterator.checkpoints()[0]   # JSON-safe: trainers save this dict in state.json
            state["dali"] = base64.b64encode(cp if isinstance(cp, bytes) else cp.encode()).decode("ascii")
        return state

    def _raw_batches(self, plan, start, resume):
        checkpoint = base64.b64decode(resume["dali"]) if resume and "dali" in resume else None
        if start and checkpoint is None:
            raise ValueError("a mid-epoch DALI loader state needs its 'dali' checkpoint")
        try:
            pipe = self._pipeline(plan, checkpoint)
            self._iterator = DALIGenericIterator(pipe, OUTPUTS, reader_name=READER,
                                                 last_batch_policy=LastBatchPolicy.PARTIAL, auto_reset=False)
        except RuntimeError as exc:
            raise ShardError(f"{self.shards.tars[0].parent}: DALI cannot open the shards: {_reason(exc)}") from None
        for _ in range(start, plan.num_batches):
            try:
                out = next(self._iterator)[0]
            except StopIteration:
                raise ShardError(f"{self.shards.tars[0].parent}: DALI ran out of samples before batch "
                                 f"{plan.num_batches} of the plan; the index files do not match the tars") from None
            except RuntimeError as exc:
                raise ShardError(f"{self.shards.tars[0].parent}: DALI failed on a sample: {_reason(exc)}") from None
            metas = [json.loads(bytes(j.cpu().numpy()).rstrip(b"\0")) for j in out["json"]]
            if self.augment:
                image = augment.jitter_normalize(out["image"].to(self.device), out["colour"])
            else:
                image = out["image"].to(self.device, copy=True)
            mel = features.mel_power(out["window"].to(self.device), out["window_length"].reshape(-1),
                                     self.input_samples).unsqueeze(1)
            label = torch.tensor([int(m["class_index"]) for m in metas], dtype=torch.int64, device=self.device)
            yield image, mel, label, [str(m["id"]) for m in metas]
