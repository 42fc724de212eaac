"""Synthetic class sounds: each class has its own pitch, timbre (harmonics, spectral tilt) and rhythm.

`class_voice(k)` fixes what a class sounds like (independent of the seed); `draw_voice(rng, k)` adds the per-clip
variation (pitch jitter, modulation phase, level); `render(voice, sample_rate, seconds, ...)` synthesizes the
waveform analytically, so the same draw can be rendered at the clip's own rate for the mp4 and at 16 kHz for the
test-set wav files.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RHYTHMS = ["steady", "pulses", "chirps"]


@dataclass(frozen=True)
class Voice:
    """One sound: f0 (Hz), harmonics with amplitude h**-tilt, amplitude modulation and rhythm."""
    f0: float
    harmonics: int
    tilt: float
    am_rate: float
    am_depth: float
    rhythm: str
    duty: float
    phase: float
    level: float


def class_voice(k: int) -> Voice:
    """The nominal voice of class k: quarter-octave pitch steps spread over 3 octaves (classes 12-23 sit an eighth
    of an octave above 0-11), varied timbre and rhythm."""
    f0 = 160.0 * 2 ** (((k * 7) % 12) / 4.0 + (k // 12 % 2) / 8.0)
    return Voice(f0=f0, harmonics=2 + (k * 5) % 6, tilt=0.5 + 0.5 * ((k * 3) % 4),
                 am_rate=[2.0, 3.5, 5.5, 8.0, 11.0][(k * 2) % 5], am_depth=0.7, rhythm=RHYTHMS[(k + k // 12) % 3],
                 duty=0.35 + 0.1 * (k % 4), phase=0.0, level=0.4)


def draw_voice(rng: np.random.Generator, k: int) -> Voice:
    """A clip's instance of class k: pitch within +-4 %, random modulation phase and level."""
    v = class_voice(k)
    return Voice(f0=float(v.f0 * rng.uniform(0.96, 1.04)), harmonics=v.harmonics, tilt=v.tilt,
                 am_rate=float(v.am_rate * rng.uniform(0.95, 1.05)), am_depth=v.am_depth, rhythm=v.rhythm,
                 duty=v.duty, phase=float(rng.uniform(0, 1)), level=float(rng.uniform(0.25, 0.5)))


def _gate(t: np.ndarray, rate: float, duty: float, phase: float, edge: float = 0.006) -> tuple[np.ndarray, np.ndarray]:
    """Smooth on/off envelope of notes at `rate` per second, and the position (0..1) inside each note."""
    cyc = t * rate + phase
    pos = cyc - np.floor(cyc)
    note_len = duty / rate
    tin = pos / rate  # seconds since the note started
    ramp = np.clip(np.minimum(tin, note_len - tin) / edge, 0, 1)
    env = np.where(pos < duty, 0.5 - 0.5 * np.cos(np.pi * ramp), 0.0)
    return env, np.clip(pos / duty, 0, 1)


def render(voice: Voice, sample_rate: int, seconds: float, noise: float = 0.0,
           rng: np.random.Generator | None = None) -> np.ndarray:
    """float32 mono waveform of `voice`, peak-normalized to `voice.level`, plus white noise of rms `noise`."""
    n = int(round(seconds * sample_rate))
    t = np.arange(n, dtype=np.float64) / sample_rate
    if voice.rhythm == "steady":
        env = 1 - voice.am_depth + voice.am_depth * (0.5 + 0.5 * np.sin(2 * np.pi * (voice.am_rate * t + voice.phase)))
        freq = np.full(n, voice.f0)
    else:
        env, pos = _gate(t, voice.am_rate / 2, voice.duty, voice.phase)
        glide = 1 + 0.25 * pos if voice.rhythm == "chirps" else 1.0
        freq = voice.f0 * glide * np.ones(n)
    phase = 2 * np.pi * np.cumsum(freq) / sample_rate
    x = np.zeros(n, np.float64)
    for h in range(1, voice.harmonics + 1):
        if h * voice.f0 * 1.25 >= 0.45 * sample_rate:
            break
        x += np.sin(h * phase) * h ** (-voice.tilt)
    x *= env
    peak = float(np.max(np.abs(x))) if n else 0.0
    if peak > 0:
        x *= voice.level / peak
    if noise > 0:
        gen = rng if rng is not None else np.random.default_rng(0)
        x += gen.normal(0.0, noise, n)
    return np.clip(x, -1, 1).astype(np.float32)


def to_channels(mono: np.ndarray, channels: int, rng: np.random.Generator, noise: float) -> np.ndarray:
    """[channels, n] float32: stereo gets a slight random pan and independent noise per channel."""
    if channels == 1:
        return mono[None, :]
    pan = rng.uniform(-0.3, 0.3)
    left = mono * (1 - pan) + rng.normal(0.0, noise, mono.shape[0]).astype(np.float32)
    right = mono * (1 + pan) + rng.normal(0.0, noise, mono.shape[0]).astype(np.float32)
    return np.clip(np.stack([left, right]), -1, 1).astype(np.float32)
