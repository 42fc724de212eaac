"""Per-clip quality figures, computed while sharding from what the sharder decodes anyway (issue 17, work in
progress on branch wip-17).

Audio (`audio_figures`): loudness as RMS dBFS of the whole 16 kHz mono track and of its centre `window` seconds (the
evaluation window); the fraction of 100 ms frames whose RMS is below `silence_dbfs`; clipping as the fraction of the
source's samples at full scale (measured on the source channels, before the resampler's filter smooths the flat
tops); how the source channels relate: "mono", "identical", "one_silent" or "distinct".
Video (`video_figures`): from grey thumbnails of frames across the clip, `stillness` = the mean absolute difference
between consecutive thumbnails (0-255; 0 for a still image) and `distinct_frames`, the number of thumbnails that
differ from every earlier one by more than `same_level`.
Duplicates: `image_hash` (a 64-bit difference hash of the centre frame) and `audio_hash` (64 bits: each cell of an
8 x 8 grid of log band energies over time, from 8 spectra per eighth of the clip, above or below the grid's median),
compared by Hamming distance.
"""
from __future__ import annotations

import math

import numpy as np
from PIL import Image

from pipeline.shard.format import SAMPLE_RATE

FLOOR_DBFS = -120.0          # the level reported for digital silence (log of 0)


def dbfs(x: np.ndarray) -> float:
    """RMS level of samples in [-1, 1] in dB relative to full scale (FLOOR_DBFS for silence or no samples)."""
    if x.size == 0:
        return FLOOR_DBFS
    flat = np.ravel(x)
    rms = math.sqrt(float(np.dot(flat, flat)) / flat.size)
    return max(20.0 * math.log10(rms), FLOOR_DBFS) if rms > 0 else FLOOR_DBFS


def audio_figures(mono: np.ndarray, source: np.ndarray | None = None, *, window: float = 3.0,
                  frame: float = 0.1, silence_dbfs: float = -60.0) -> dict:
    """`mono`: int16 samples at 16 kHz; `source`: the decoded channels `[C, N]` as floats in [-1, 1] at their own
    rate (None: figures from `mono` alone)."""
    x = mono.astype(np.float32) / 32768.0
    n = int(round(window * SAMPLE_RATE))
    start = max((x.size - n) // 2, 0)
    hop = int(round(frame * SAMPLE_RATE))
    frames = x[: x.size // hop * hop].reshape(-1, hop) if x.size >= hop else x.reshape(1, -1)
    power = np.einsum("ij,ij->i", frames, frames, dtype=np.float64) / frames.shape[1]   # one pass, no copies
    quiet = int(np.count_nonzero(power < 10 ** (silence_dbfs / 10)))
    src = np.atleast_2d(source if source is not None else x)
    clipped = float(np.mean(np.abs(src) >= 1.0 - 1.0 / 32768)) if src.size else 0.0
    return {"rms_dbfs": round(dbfs(x), 3), "window_rms_dbfs": round(dbfs(x[start:start + n]), 3),
            "silent_fraction": round(quiet / len(frames), 4), "clipped_fraction": round(clipped, 6),
            "channels": channel_relation(src, silence_dbfs)}


def channel_relation(channels: np.ndarray, silence_dbfs: float = -60.0) -> str:
    """"mono" (one channel), "identical" (every channel equal to the first within 1/32768), "one_silent" (a channel
    below `silence_dbfs` while another is not) or "distinct"."""
    if channels.shape[0] < 2:
        return "mono"
    if all(np.max(np.abs(c - channels[0]), initial=0.0) <= 1.0 / 32768 for c in channels[1:]):
        return "identical"
    levels = [dbfs(c) for c in channels]
    if min(levels) < silence_dbfs <= max(levels):
        return "one_silent"
    return "distinct"


THUMB = 32                  # side of the grey thumbnails stillness is read from


def thumbnail(img: Image.Image, side: int = THUMB) -> np.ndarray:
    """A grey `side` x `side` float thumbnail (0-255)."""
    return np.asarray(img.convert("L").resize((side, side), Image.Resampling.BOX), dtype=np.float64)


def video_figures(thumbs: list[np.ndarray], same_level: float = 2.0) -> dict:
    """Stillness and distinct frames of grey thumbnails of frames taken across the clip, in time order (at least
    one)."""
    thumbs = [np.asarray(t, dtype=np.float64) for t in thumbs]
    diffs = [float(np.mean(np.abs(b - a))) for a, b in zip(thumbs, thumbs[1:])]
    distinct = [thumbs[0]]
    for t in thumbs[1:]:
        if all(float(np.mean(np.abs(t - d))) > same_level for d in distinct):
            distinct.append(t)
    return {"stillness": round(float(np.mean(diffs)), 3) if diffs else 0.0, "distinct_frames": len(distinct),
            "sampled_frames": len(thumbs)}


def image_hash(img: Image.Image) -> str:
    """64-bit difference hash: a 9 x 8 grey thumbnail, each pixel brighter than its right neighbour or not."""
    g = np.asarray(img.convert("L").resize((9, 8), Image.Resampling.BOX), dtype=np.int16)
    bits = (g[:, :-1] > g[:, 1:]).ravel()
    return f"{int(''.join('1' if b else '0' for b in bits), 2):016x}"


def audio_hash(mono: np.ndarray) -> str:
    """64 bits from an 8 (time) x 8 (log-spaced band) grid of log energies, each above the grid's median or not."""
    x = mono.astype(np.float64) / 32768.0
    if x.size < 8 * 512:
        x = np.pad(x, (0, 8 * 512 - x.size))
    segments = np.array_split(x, 8)
    edges = np.geomspace(1, 256, 9).astype(int)      # rfft bins of 512 samples: 31 Hz to 8 kHz
    window = np.hanning(512)
    grid = np.empty((8, 8))
    for t, seg in enumerate(segments):
        frames = seg[: seg.size // 512 * 512].reshape(-1, 512)
        frames = frames[np.linspace(0, len(frames) - 1, min(len(frames), 8)).round().astype(int)]   # 8 a segment
        power = np.mean(np.abs(np.fft.rfft(frames * window, axis=1)) ** 2, axis=0)
        grid[t] = np.log(np.add.reduceat(power[:256], edges[:-1]) + 1e-12)
    bits = (grid > np.median(grid)).ravel()
    return f"{int(''.join('1' if b else '0' for b in bits), 2):016x}"


def hamming(a: str, b: str) -> int:
    return bin(int(a, 16) ^ int(b, 16)).count("1")
