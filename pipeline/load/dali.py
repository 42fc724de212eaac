"""The DALI loader: `fn.readers.webdataset` over the shard list with its index files, one graph for the CPU
(`device_id=None`) and the GPU (`device='mixed'` JPEG decoding, GPU operators) chosen by `LoaderConfig.device`, then
the torch side of each batch on the same device.

Where the per-sample work runs is `LoaderConfig.dali_graph`, decided in one place (`full_graph`):
- `full` (the default on `cuda`): inside the DALI graph, so that DALI's executor prepares batch k+1 in its own stream
  while the model trains on batch k. Image, training with augmentation: decoders.image_random_crop (area 0.3-1,
  aspect 3/4-4/3, only the crop decoded) -> resize to S x S (bilinear, antialias, uint8, as RandomResizedCrop) ->
  flip (p 0.5); evaluation: decoders.image. Audio: the window, tiled to the input length as SSL-TIE tiles it (by
  doubling: cat + slice, as many times as the shards' shortest clip needs, `tile_doublings`) -> spectrogram
  (periodic Hann 512, hop 239, centred, reflect padding, power). What DALI lacks stays in torch, a fixed number of
  ops per batch whatever its size (`full_tensors`): the Gaussian blur, colour map and normalisation
  (`augment.blur_jitter_normalize`), the evaluation resize (`augment.eval_batch`: DALI's cubic resize treats the
  border pixels differently from torchvision's, up to 5 grey levels), the mel filterbank and dB
  (`features.power_to_mel`, `to_db`: DALI's mel_filter_bank weights are up to 0.6% off torchaudio's, 5e-3 dB), and,
  in `LoaderBase`, SpecAugment; the trainer adds the silence and noise inputs.
- `decode` (the default on `cpu`, where it is faster on few cores): the graph decodes and cuts the audio window; in
  torch `augment.train_batch` resizes each crop and flips, `augment.eval_batch` resizes each frame, and
  `features.mel_power` tiles and computes the log-mel (the same functions the reference loader uses).
Both draw the per-sample augmentation in the graph (flip p 0.5; blur p 0.5 with sigma U(0.1, 2); colour jitter
p 0.8 with factors U(0.6, 1.4) and hue U(-0.1, 0.1) turns; grayscale p 0.2; the audio window's start).

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
import math
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
OUTPUTS = ["image", "audio", "json", "window_length", "draws"]   # audio: the window (decode) or the log-mel (full)
DENSE, PER_SAMPLE = DALIRaggedIterator.DENSE_TAG, DALIRaggedIterator.SPARSE_LIST_TAG


def full_graph(cfg, gpu: bool) -> bool:
    """The one switch between the two placements of the per-sample work (module docstring): `dali_graph` full or
    decode, and auto = full on the GPU, decode on the CPU."""
    if cfg.dali_graph not in ("auto", "full", "decode"):
        raise ValueError(f"loader.dali_graph must be auto, full or decode, got {cfg.dali_graph!r}")
    return cfg.dali_graph == "full" or (cfg.dali_graph == "auto" and gpu)


def tile_doublings(input_samples: int, shortest: int) -> int:
    """How many times the graph doubles an audio window so that the shortest one (`shortest` samples) reaches
    `input_samples`: ceil(log2(input / shortest))."""
    return max(0, math.ceil(math.log2(input_samples / max(shortest, 1))))


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
    grayscale with p 0.2; blur with p 0.5 (sigma U(0.1, 2)), otherwise sigma 0; flip with p 0.5 (also returned as
    an integer, for the full graph's flip). The torch side applies the rest (`augment.train_batch` or
    `augment.blur_jitter_normalize`)."""
    on, gray, blur = _coin(augment.JITTER_P), _coin(augment.GRAY_P), _coin(augment.BLUR_P)
    b, c, s, h = augment.JITTER
    factors = [1.0 + on * _uniform(-b, b), 1.0 + on * _uniform(-c, c), 1.0 + on * _uniform(-s, s),
               on * _uniform(-h, h), gray, blur * _uniform(*augment.BLUR_SIGMA)]
    flip = fn.random.coin_flip(probability=augment.FLIP_P)     # drawn last, as it always was: same streams
    return fn.stack(*factors, fn.cast(flip, dtype=types.FLOAT)), flip


def _power_spectrogram(wave, length, *, input_samples: int, doublings: int, device: str):
    """The power spectrogram `[257, T]` of an audio window of `length` real samples tiled to `input_samples` as
    SSL-TIE tiles (repeated, then cut): each doubling appends the piece to itself and cuts it to at most
    `input_samples`, so it stays the window repeated. features.stft_power's settings: periodic Hann of 512 (DALI's
    default Hann is shifted by half a sample), hop 239, centred windows, reflect padding."""
    for _ in range(doublings):
        length = dmath.min(length * 2, input_samples)
        wave = fn.slice(fn.cat(wave, wave, axis=0, device=device), fn.constant(idata=0, dtype=types.INT64), length,
                        axes=[0], device=device)
    return fn.spectrogram(wave, device=device, nfft=features.N_FFT, window_length=features.N_FFT,
                          window_step=features.HOP, window_fn=features.periodic_hann().tolist(), center_windows=True,
                          reflect_padding=True, power=2, layout="ft")


@pipeline_def
def _graph(*, tars, indexes, shard_id, num_shards, shuffle, shuffle_buffer, reader_seed, train_aug, random_window,
           window_samples, gpu, full, image_size, input_samples, doublings):
    """Per sample: the image (decoded; with `full` and training augmentation, resized and flipped too), the audio
    (`full`: the tiled window's power spectrogram; else the window, zero-padded), the json, the window's real length
    and the image draws."""
    js, jpg, audio = fn.readers.webdataset(
        paths=tars, index_paths=indexes, ext=["json", "jpg", "flac;wav"], missing_component_behavior="skip",
        shard_id=shard_id, num_shards=num_shards, pad_last_batch=True, random_shuffle=shuffle,
        initial_fill=shuffle_buffer, seed=reader_seed, name=READER)
    decode_device, device = ("mixed", "gpu") if gpu else ("cpu", "cpu")
    if train_aug:
        lo, hi = augment.CROP_SCALE
        img = fn.decoders.image_random_crop(jpg, device=decode_device, output_type=types.RGB, random_area=[lo, hi],
                                            random_aspect_ratio=[3 / 4, 4 / 3], num_attempts=10)
        draws, flip = _image_draws()
        if full:   # RandomResizedCrop's resize (bilinear, antialias, uint8 out), then the flip
            img = fn.resize(img, device=device, resize_x=image_size, resize_y=image_size,
                            interp_type=types.INTERP_LINEAR, antialias=True)
            img = fn.flip(img, device=device, horizontal=flip)
    else:
        img = fn.decoders.image(jpg, device=decode_device, output_type=types.RGB)
        draws = fn.constant(fdata=0.0)  # unused: nothing is drawn for evaluation

    wave, _ = fn.decoders.audio(audio, dtype=types.FLOAT, downmix=True)   # CPU-only in DALI
    length = wave.shape(dtype=types.INT64)[0]
    win = dmath.min(length, window_samples)
    room = length - win
    if random_window:
        start = fn.cast(dmath.floor(fn.random.uniform(range=[0.0, 1.0])
                                    * fn.cast(room + 1, dtype=types.FLOAT)), dtype=types.INT64)
        start = dmath.min(start, room)
    else:
        start = room // 2
    if full:
        piece = fn.slice(wave, start, win, axes=[0])
        out_audio = _power_spectrogram(piece.gpu() if gpu else piece, win, input_samples=input_samples,
                                       doublings=doublings, device=device)
    else:
        out_audio = fn.slice(wave, start, fn.constant(idata=window_samples, dtype=types.INT64), axes=[0],
                             out_of_bounds_policy="pad")  # zeros past a short clip
        if gpu:
            out_audio = out_audio.gpu()
    if gpu and full:
        draws = draws.gpu()
    return img, out_audio, fn.pad(js, fill_value=0), win, draws


def full_tensors(out: dict, train_aug: bool, image_size: int, device: torch.device
                 ) -> tuple[torch.Tensor, torch.Tensor, list[dict]]:
    """The torch side of a batch of the full graph: (image `[B, 3, S, S]` normalized, log-mel `[B, 1, 257, T]` dB,
    metadata) from the pipeline's outputs, in a fixed number of torch ops whatever the batch size (no loop over
    samples, nothing that waits for the device; evaluation frames: one resize per distinct frame size).

    The mel filterbank and the dB are features.power_to_mel and to_db, not DALI's mel_filter_bank and to_decibels:
    DALI's HTK filter weights are up to 0.6% off torchaudio's (5e-3 dB), past the 1e-3 dB the loaders must agree to."""
    metas = [json.loads(bytes(j).rstrip(b"\0")) for j in out["json"].numpy()]
    if train_aug:     # resized and flipped in the graph; HWC -> a [B, 3, S, S] channels-last view
        image = augment.blur_jitter_normalize(out["image"].to(device).permute(0, 3, 1, 2),
                                              out["draws"].to(device)[:, :6])
    else:
        image = augment.eval_batch([f.to(device) for f in out["image"]], image_size)
    mel = features.to_db(features.power_to_mel(out["audio"].to(device)), inplace=True)
    return image, mel.unsqueeze(1), metas


class DaliLoader(LoaderBase):
    def __init__(self, cfg, shards, **kw):
        super().__init__(cfg, shards, **kw)
        self.gpu = cfg.device == "cuda"
        if self.gpu and not torch.cuda.is_available():
            raise ValueError("loader device 'cuda' asked for, but no GPU is visible")
        self.full = full_graph(cfg, self.gpu)
        self.doublings = tile_doublings(self.input_samples, min(self.window_samples, shards.min_audio_samples))
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
            window_samples=self.window_samples, gpu=self.gpu, full=self.full, image_size=self.cfg.image_size,
            input_samples=self.input_samples, doublings=self.doublings)
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
        if self.full:
            self.shards.check_audio_floor(out["window_length"].reshape(-1).tolist(),   # a CPU output: no wait
                                          self.window_samples)
            image, mel, metas = full_tensors(out, self.augment, self.cfg.image_size, self.device)
        else:
            metas = [json.loads(bytes(j).rstrip(b"\0")) for j in out["json"].numpy()]
            size = self.cfg.image_size
            frames = [f.to(self.device) for f in out["image"]]        # no copy where DALI decoded on this device
            image = (augment.train_batch(frames, out["draws"], size) if self.augment
                     else augment.eval_batch(frames, size))
            mel = features.mel_power(out["audio"].to(self.device), out["window_length"].reshape(-1),
                                     self.input_samples, db=True).unsqueeze(1)
        label = features.to_device(torch.tensor([int(m["class_index"]) for m in metas], dtype=torch.int64),
                                   self.device)
        if self.pin_memory:   # here, in the torch side's thread: the trainer's copy to the GPU then waits for nothing
            image, mel, label = (t.pin_memory() for t in (image, mel, label))
        return image, mel, label, [str(m["id"]) for m in metas]

    def _raw_batches(self, plan, start, resume):
        checkpoint = base64.b64decode(resume["dali"]) if resume and "dali" in resume else None
        if start and checkpoint is None:
            raise ValueError("a mid-epoch DALI loader state needs its 'dali' checkpoint")
        self._checkpoint = checkpoint
        try:
            pipe = self._pipeline(plan, checkpoint)
            types_ = [DENSE if self.full and self.augment else PER_SAMPLE] + [DENSE] * 4   # else: frames of any size
            iterator = DALIRaggedIterator(pipe, OUTPUTS, reader_name=READER, output_types=types_,
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
