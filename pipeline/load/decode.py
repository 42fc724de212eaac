"""Decoding one shard sample in Python: the reference loader's decoders (soundfile for FLAC/WAV, torchvision for
the JPEG, json), and `first_damaged`, which names the sample a failing DALI batch choked on.

Every failure is a ShardError naming `tar:key` and the member at fault. DALI reports a damaged member with a message
that names no file; when a DALI batch fails, the DALI loader scans its range with these decoders to say which
sample it was.
"""
from __future__ import annotations

import io
import json

import numpy as np
import soundfile as sf
import torch
from torchvision.io import ImageReadMode, decode_jpeg

from pipeline.load.shards import ShardSet
from pipeline.shard.format import AUDIO_EXTS, IMAGE_EXT, META_EXT, ShardError


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


def decode_sample(raw: dict) -> tuple[dict, torch.Tensor, torch.Tensor]:
    """(json metadata with id and class_index, mono waveform, uint8 [3, H, W] image) of one webdataset sample."""
    where = f"{raw['__url__']}:{raw['__key__']}"
    try:
        meta = json.loads(raw[META_EXT])
        str(meta["id"]), int(meta["class_index"])
    except (KeyError, ValueError, TypeError) as exc:
        raise ShardError(f"{where}: bad or missing json member ({exc})") from None
    wave = decode_audio(next(raw[e] for e in AUDIO_EXTS if e in raw), where)
    return meta, wave, decode_image(raw[IMAGE_EXT], where)


def first_damaged(shards: ShardSet, begin: int, end: int) -> str | None:
    """The one-line problem of the first sample in positions [begin, end) that does not decode, or None."""
    try:
        for _, raw in shards.stream(begin, end):
            decode_sample(raw)
    except ShardError as exc:
        return str(exc)
    return None
