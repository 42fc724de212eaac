"""Evaluation inputs: reading a test sample's image and audio, and the Dataset that prepares them as a model family
does (`eval.models`). SSL-SaN's readers (eval.models.ssl_san):

- Image (every family): RGB, square resize to 224 x 224 (bicubic, on the tensor, torchvision's default antialiasing),
  ImageNet normalisation, no clamp: the ICASSP evaluation's transform, which keeps the VGG-SS boxes aligned on
  non-square frames (REFERENCE.md A.2), and the loader's `pipeline.load.augment.eval_transform`.
- Audio: channel 0 of the file (as the ICASSP SSL-TIE loader), resampled to 16 kHz if the file has another rate, then
  the whole clip from its start tiled / cut to the test length as SSL-TIE tiles (10 s for VGG-SS / IS3 / IS3+, 5 s for
  S4), and `pipeline.load.features.logmel` (dB): [1, 257, T].
Every family reads audio through `read_audio`: a file must hold what its header promises (a WAV whose data chunk is
cut short, a truncated copy, is an error naming the file, not a shorter clip scored as if complete).
A file that cannot be decoded becomes an `error` entry naming it (DataLoader workers would otherwise wrap the exception
in a multi-line message); `batches` raises it as an EvalError in the main process.
"""
from __future__ import annotations

import os
import struct

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF
import torchvision.transforms.functional as TF
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from eval.errors import EvalError
from eval.testsets import TestSet
from pipeline.load.features import IMAGENET_MEAN, IMAGENET_STD, SAMPLE_RATE, tile


def _resized(path, size: int) -> torch.Tensor:
    """float [3, size, size], square-resized (bicubic, on the tensor): may overshoot [0, 1] where the kernel rings."""
    try:
        with Image.open(path) as im:
            rgb = TF.to_tensor(im.convert("RGB"))
    except (OSError, UnidentifiedImageError) as exc:
        raise EvalError(f"{path}: cannot read image: {exc}") from None
    return TF.resize(rgb, [size, size], interpolation=TF.InterpolationMode.BICUBIC)


def load_rgb(path, size: int) -> torch.Tensor:
    """float [3, size, size] in [0, 1], square-resized (bicubic) and clamped: the image shown under the maps."""
    return _resized(path, size).clamp_(0.0, 1.0)


def load_image(path, size: int = 224) -> torch.Tensor:
    """The model's image input, float [3, size, size]: the evaluation code's transform for every method it runs (to
    tensor, bicubic resize to size x size, ImageNet normalisation, no clamp after the resize)."""
    return TF.normalize(_resized(path, size), IMAGENET_MEAN, IMAGENET_STD)


def wav_declared_frames(path) -> int | None:
    """The frames a RIFF/WAVE file's `data` chunk header promises (None: not a WAV, or a streaming header that
    promises nothing, size 0 or 0xFFFFFFFF)."""
    with open(path, "rb") as fh:
        head = fh.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        block_align = 0
        while True:
            chunk = fh.read(8)
            if len(chunk) < 8:
                return None
            cid, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            if cid == b"fmt ":
                fmt = fh.read(size + (size & 1))
                block_align = struct.unpack("<H", fmt[12:14])[0] if len(fmt) >= 14 else 0
                continue
            if cid == b"data":
                return size // block_align if block_align and size not in (0, 0xFFFFFFFF) else None
            fh.seek(size + (size & 1), os.SEEK_CUR)


def read_audio(path) -> tuple[np.ndarray, int]:
    """(float32 [frames, channels], sample rate) of an audio file that holds every frame its header promises."""
    try:
        wave, sr = sf.read(path, dtype="float32", always_2d=True)
        declared = wav_declared_frames(path)
    except (RuntimeError, sf.LibsndfileError, OSError) as exc:
        detail = str(exc).replace(f"Error opening {str(path)!r}: ", "")
        raise EvalError(f"{path}: cannot read audio: {detail}") from None
    if wave.shape[0] == 0:
        raise EvalError(f"{path}: audio file has no samples")
    if declared is not None and wave.shape[0] < declared:
        raise EvalError(f"{path}: truncated audio: the header promises {declared} samples ({declared / sr:.3f} s), "
                        f"the file holds {wave.shape[0]} ({wave.shape[0] / sr:.3f} s)")
    return wave, sr


def load_waveform(path, num_samples: int) -> torch.Tensor:
    """Channel 0 at 16 kHz, tiled / cut to `num_samples`: float32 [num_samples]."""
    wave, sr = read_audio(path)
    mono = torch.from_numpy(np.ascontiguousarray(wave[:, 0]))
    if sr != SAMPLE_RATE:
        mono = AF.resample(mono, sr, SAMPLE_RATE)
    return tile(mono, num_samples)


class EvalInputs(Dataset):
    """Items of a test set: `what` = "audio" (index, audio) or "image" (index, image, gt), for the sample indices
    `indices` (default: all, in order), as the model family's `inputs` (eval.models.base.Inputs) prepares them."""

    def __init__(self, testset: TestSet, what: str, seconds: float, inputs, indices=None):
        self.testset, self.what, self.seconds, self.inputs = testset, what, seconds, inputs
        self.indices = list(range(len(testset))) if indices is None else [int(i) for i in indices]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int) -> dict:
        i = self.indices[k]
        s = self.testset.samples[i]
        try:
            if self.what == "audio":
                return {"index": i, "audio": self.inputs.audio(s.audio, self.seconds)}
            return {"index": i, "image": self.inputs.image(s.image), "gt": torch.from_numpy(self.testset.gt(i))}
        except EvalError as exc:
            return {"index": i, "error": str(exc)}


def collate(items: list[dict]) -> dict:
    """Stack a batch; a batch with a failed item is {"error": message} (collate runs inside the worker)."""
    for it in items:
        if "error" in it:
            return {"error": it["error"]}
    return {k: torch.stack([torch.as_tensor(it[k]) for it in items]) for k in items[0]}


def batches(loader):
    """Iterate a DataLoader of EvalInputs, raising the first failed item as an EvalError in this process."""
    for batch in loader:
        if "error" in batch:
            raise EvalError(batch["error"])
        yield batch
