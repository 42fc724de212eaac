"""Per-clip quality figures, computed by the sharder from what it decodes anyway: pure functions of arrays.

Audio (`audio_figures`): loudness as RMS dBFS of the whole 16 kHz mono track and of its centre `window` seconds (the
evaluation window); `silent_fraction`, the fraction of 100 ms frames whose RMS is below `silence_dbfs`;
`clipped_fraction`, the fraction of the source's samples at full scale, read as |x| >= NEAR_FULL_SCALE on the source
channels before the resampler (a lossy codec ripples the flat tops of a clipped waveform by a few tenths of a dB, so
exact full scale misses most of them; an unclipped track has almost no samples that close to full scale); how the
source channels relate: "mono", "identical", "one_silent" or "distinct".
Video (`video_figures`): from area-averaged float thumbnails of frames across the clip (`frame_thumbnail`: luma on a
THUMB x THUMB grid, each chroma plane on a grid half as fine, so that an object of another colour but the same
brightness still counts), in time order: `motion` = the largest change of any thumbnail cell between consecutive
frames (levels of 0-255; a still image re-encoded stays below about 1.3, an object that moves by two pixels changes
a cell by several levels) and `mean_motion`, the mean absolute change.
Duplicates: `image_hash` (a 64-bit difference hash of the centre frame) and `audio_hash` (64 bits: each cell of an
8 x 8 grid of log band energies over time, from 8 spectra per eighth of the clip, above or below the grid's median),
compared by Hamming distance (pipeline.shard.screening).
"""
from __future__ import annotations

import math

import numpy as np
from PIL import Image

from pipeline.shard.format import SAMPLE_RATE

FLOOR_DBFS = -120.0          # the level reported for digital silence (log of 0)
NEAR_FULL_SCALE = 0.95       # |sample| at or above this counts as clipped (0.45 dB below full scale)
THUMB = 32                   # side of the luma thumbnails motion is read from


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
    clipped = float(np.count_nonzero(np.abs(src) >= NEAR_FULL_SCALE)) / src.size if src.size else 0.0
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


def thumbnail(grey: np.ndarray, side: int = THUMB) -> np.ndarray:
    """A `side` x `side` float thumbnail of a grey image `[H, W]`: the mean of each cell of an even grid (cells of
    whole pixels; for images smaller than `side`, cells of one pixel repeat)."""
    g = np.asarray(grey)
    rows = np.minimum((np.arange(side) * g.shape[0]) // side, g.shape[0] - 1)
    cols = np.minimum((np.arange(side) * g.shape[1]) // side, g.shape[1] - 1)
    # columns first (the long axis shrinks in one contiguous pass), integer sums for 8-bit planes: exact and cheap
    acc = np.float64 if g.dtype.kind == "f" else np.int64
    sums = np.add.reduceat(np.add.reduceat(g, cols, axis=1, dtype=acc), rows, axis=0)
    nr = np.diff(np.append(rows, g.shape[0])).clip(min=1)
    nc = np.diff(np.append(cols, g.shape[1])).clip(min=1)
    return sums / np.outer(nr, nc)


def frame_thumbnail(y: np.ndarray, cb: np.ndarray, cr: np.ndarray) -> np.ndarray:
    """The flat thumbnail of a frame's planes (any chroma resolution): luma THUMB x THUMB, chroma THUMB/2 squared."""
    return np.concatenate([thumbnail(y).ravel(), thumbnail(cb, THUMB // 2).ravel(), thumbnail(cr, THUMB // 2).ravel()])


def video_figures(thumbs: list[np.ndarray]) -> dict:
    """Motion of thumbnails of frames taken across the clip, in time order (at least one)."""
    diffs = [np.abs(np.asarray(b, np.float64) - np.asarray(a, np.float64)) for a, b in zip(thumbs, thumbs[1:])]
    return {"motion": round(max(float(d.max()) for d in diffs), 3) if diffs else 0.0,
            "mean_motion": round(float(np.mean([d.mean() for d in diffs])), 3) if diffs else 0.0,
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
