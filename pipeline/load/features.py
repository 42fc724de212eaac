"""SSL-TIE's audio features in torch: the one log-mel definition, the audio window and tiling, SpecAugment, and the
seeded generators of per-position random draws.

Both loaders (DALI and reference), the per-file benchmark baseline, the trainer and the evaluator use these functions,
so every stage feeds the model the same input (docs/ARCHITECTURE.md section 3, ../shared/REFERENCE.md A.1 and C):
- log-mel: n_fft 512, hop 239, 257 HTK mel bins (norm None, 0 Hz to sr/2), periodic Hann, centred frames with reflect
  padding, window-energy normalisation (`normalized=True`), power 2, dB = 10*log10(max(x, 1e-10)). At 16 kHz 28 of the
  257 mel rows are empty and read -100 dB; they are kept, as SSL-TIE keeps them.
- audio: a window (3 s by default, centred or random) is cut from the clip and tiled to the model's input length the
  way SSL-TIE tiles: repeated floor(L/len)+1 times, truncated to L.
- SpecAugment (train): with p 0.8 one time mask (width U[0,180)) then one frequency mask (width U[0,35)), on the mel
  power before dB, so masked cells read -100 dB (torchaudio's TimeMasking/FrequencyMasking draw, per sample).
- random draws tied to a position (epoch, rank, batch; or a pass seed and a sample): `position_generator`, so that a
  resumed run or a re-batched evaluation draws the same values. The silence and noise inputs built from this log-mel
  live in `pipeline.load.negatives`.
"""
from __future__ import annotations

import warnings

import torch
import torchaudio.functional as AF

from pipeline.shard.format import SAMPLE_RATE

N_FFT = 512
HOP = 239
N_MELS = 257
AMIN = 1e-10
DB_FLOOR = -100.0  # 10 * log10(AMIN)
SPEC_AUG_P = 0.8
TIME_MASK = 180
FREQ_MASK = 35
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_CACHE: dict[tuple[str, str], torch.Tensor] = {}


def num_frames(num_samples: int) -> int:
    """Spectrogram frames of a waveform of `num_samples` (centred frames): 670 for 10 s at 16 kHz, 335 for 5 s."""
    return 1 + num_samples // HOP


def seconds_to_samples(seconds: float) -> int:
    return int(round(seconds * SAMPLE_RATE))


def periodic_hann(device: torch.device | str = "cpu") -> torch.Tensor:
    """The STFT window: a periodic Hann of 512 (torch.hann_window's default), float32."""
    key = ("hann", str(device))
    if key not in _CACHE:
        _CACHE[key] = torch.hann_window(N_FFT, periodic=True, dtype=torch.float32, device=device)
    return _CACHE[key]


def window_energy() -> float:
    """sum(w^2) of the STFT window: normalized=True divides the power spectrum by it."""
    return float(periodic_hann().pow(2).sum())


def mel_filterbank(device: torch.device | str = "cpu") -> torch.Tensor:
    """[257 frequencies, 257 mel bins] HTK triangular filters, no area normalisation, 0 Hz to 8 kHz."""
    key = ("mel", str(device))
    if key not in _CACHE:
        with warnings.catch_warnings():  # torchaudio warns about the 28 empty rows, which SSL-TIE keeps
            warnings.simplefilter("ignore", UserWarning)
            fb = AF.melscale_fbanks(N_FFT // 2 + 1, 0.0, SAMPLE_RATE / 2, N_MELS, SAMPLE_RATE, norm=None,
                                    mel_scale="htk")
        _CACHE[key] = fb.to(device=device, dtype=torch.float32)
    return _CACHE[key]


def stft_power(wave: torch.Tensor) -> torch.Tensor:
    """Waveform `[..., N]` -> power spectrogram `[..., 257, 1 + N // 239]` (no window-energy normalisation yet)."""
    lead = wave.shape[:-1]
    flat = wave.reshape(-1, wave.shape[-1]).float()
    spec = torch.stft(flat, N_FFT, hop_length=HOP, win_length=N_FFT, window=periodic_hann(flat.device),
                      center=True, pad_mode="reflect", normalized=False, onesided=True, return_complex=True)
    power = spec.real.square() + spec.imag.square()
    return power.reshape(*lead, *power.shape[-2:])


MEL_BLOCKS = 16  # mel rows are multiplied in this many bands, each with only the frequency rows its filters touch


def _mel_blocks(device: torch.device | str) -> list[tuple[int, int, int, int, torch.Tensor]]:
    """The [257 mel, 257 freq] filterbank with normalized=True's 1/sum(w^2) folded in, cut into MEL_BLOCKS bands of
    mel rows: (mel_lo, mel_hi, freq_lo, freq_hi, weights[mel_hi - mel_lo, freq_hi - freq_lo]) where freq_lo:freq_hi
    is every frequency row the band's filters touch (bands of empty filters are left out).

    The triangular filters are narrow (508 of the 66,049 weights are non-zero), so the bands hold 6.6% of the dense
    product's multiply-adds and give the same sums: only exact zeros are skipped."""
    key = ("melblocks", str(device))
    if key not in _CACHE:
        dense = mel_filterbank(device).T / window_energy()
        nonzero = dense != 0
        edges = torch.linspace(0, N_MELS, MEL_BLOCKS + 1).round().long().tolist()
        blocks = []
        for lo, hi in zip(edges, edges[1:]):
            used = nonzero[lo:hi].any(0).nonzero().flatten()
            if used.numel():
                f0, f1 = int(used.min()), int(used.max()) + 1
                blocks.append((lo, hi, f0, f1, dense[lo:hi, f0:f1].contiguous()))
        _CACHE[key] = blocks
    return _CACHE[key]


def power_to_mel(power: torch.Tensor) -> torch.Tensor:
    """Power spectrogram `[..., 257 freq, T]` -> mel power `[..., 257 mel, T]`, with normalized=True's 1/sum(w^2).

    Both loaders reach it through `mel_power`, so they share one filterbank (DALI's own mel_filter_bank rounds its
    small weights differently, up to 5e-3 dB). Computed band by band (see `_mel_blocks`), which skips the dense
    product's zero weights."""
    power = power.float()
    out = power.new_zeros(power.shape[:-2] + (N_MELS, power.shape[-1]))
    for lo, hi, f0, f1, weights in _mel_blocks(power.device):
        out[..., lo:hi, :] = torch.matmul(weights, power[..., f0:f1, :])
    return out


CPU_CHUNK = 4  # waveforms per STFT + mel pass on the CPU


def mel_power(wave: torch.Tensor, lengths: torch.Tensor | None = None, length: int | None = None, *,
              db: bool = False) -> torch.Tensor:
    """Waveform `[..., N]` float -> mel power `[..., 257, 1 + N // 239]` (in dB with `db`: `to_db` applied to each
    chunk while it is in cache).

    With `lengths` `[B]` and `length`, `wave` `[B, W]` holds audio windows of which the first lengths[i] samples are
    real, and each is first tiled to `length` samples by `tile`.

    On the CPU a batch goes through in chunks of CPU_CHUNK waveforms written into one output: the tiled waves and
    the STFT's padded frames, complex spectrum and power of a chunk stay in cache and reuse freed memory, where a
    whole batch's (40 MB each at batch 32) are fresh pages every time. Same values; a GPU takes the batch in one
    pass."""
    if lengths is not None:
        sizes = [int(n) for n in lengths.tolist()]
        if wave.dim() != 2 or length is None or min(sizes, default=1) < 1:
            raise ValueError("tiling needs windows [B, W], a target length and every window length >= 1")
    else:
        length = wave.shape[-1]

    def chunk(i: int, j: int) -> torch.Tensor:
        part = wave[i:j]
        if lengths is not None:
            n = sizes[i:j]
            part = (tile(part[:, :n[0]], length) if len(set(n)) == 1 else   # one batched repeat when all match
                    torch.stack([tile(w[:k], length) for w, k in zip(part, n)]))
        mel = power_to_mel(stft_power(part))
        return to_db(mel, inplace=True) if db else mel

    if wave.dim() < 2:
        return chunk(0, None)
    if wave.device.type != "cpu" or wave.shape[0] <= CPU_CHUNK:
        return chunk(0, wave.shape[0])
    out = torch.empty(wave.shape[:-1] + (N_MELS, num_frames(length)), dtype=torch.float32)
    for i in range(0, wave.shape[0], CPU_CHUNK):
        out[i:i + CPU_CHUNK] = chunk(i, i + CPU_CHUNK)
    return out


def to_db(power: torch.Tensor, *, inplace: bool = False) -> torch.Tensor:
    """10 * log10(max(x, 1e-10)): torchaudio's AmplitudeToDB defaults (power, ref 1, no top_db).

    `inplace` overwrites `power` (no new batch-sized tensor: on the CPU, allocating one costs more than the log)."""
    out = power.clamp_(min=AMIN) if inplace else torch.clamp(power, min=AMIN)
    return out.log10_().mul_(10.0)


def logmel(wave: torch.Tensor) -> torch.Tensor:
    """SSL-TIE's log-mel of a waveform `[..., N]`: `[..., 257, T]` in dB."""
    return to_db(mel_power(wave))


def window_start(num_samples: int, window_samples: int, mode: str, generator: torch.Generator | None = None) -> int:
    """Where the audio window starts: centred ((len - win) // 2) or uniform over the valid starts."""
    room = max(num_samples - window_samples, 0)
    if mode == "center":
        return room // 2
    if mode == "random":
        return int(torch.randint(0, room + 1, (1,), generator=generator))
    raise ValueError(f"audio window mode {mode!r} is not 'center' or 'random'")


def take_window(wave: torch.Tensor, window_samples: int, mode: str,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """The `window_samples`-long window of a 1-D waveform (the whole clip when it is shorter)."""
    start = window_start(wave.shape[-1], window_samples, mode, generator)
    return wave[..., start:start + window_samples]


def tile(wave: torch.Tensor, length: int) -> torch.Tensor:
    """SSL-TIE's tiling: a clip shorter than `length` is repeated floor(length / len) + 1 times, then cut to
    `length`."""
    n = wave.shape[-1]
    if n == 0:
        raise ValueError("cannot tile an empty waveform")
    if n < length:
        wave = wave.repeat(*([1] * (wave.dim() - 1)), length // n + 1)
    return wave[..., :length]


def clip_to_input(wave: torch.Tensor, window_samples: int, input_samples: int, mode: str,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Window then tile: the waveform the model's log-mel is computed from."""
    return tile(take_window(wave, window_samples, mode, generator), input_samples)


def spec_augment_params(batch: int, frames: int, generator: torch.Generator | None = None, *, p: float = SPEC_AUG_P,
                        time_mask: int = TIME_MASK, freq_mask: int = FREQ_MASK, n_mels: int = N_MELS) -> torch.Tensor:
    """Per-sample masks `[B, 4]` int64: (time start, time width, freq start, freq width); width 0 = no mask.

    Drawn as torchaudio's mask_along_axis draws: width v = U[0, param), start = U[0, size - v), both floored."""
    u = torch.rand(batch, 5, generator=generator, dtype=torch.float64)
    apply = u[:, 0] < p
    tw = u[:, 1] * time_mask
    ts = u[:, 2] * (frames - tw)
    fw = u[:, 3] * freq_mask
    fs = u[:, 4] * (n_mels - fw)
    out = torch.stack([ts.floor(), tw.floor(), fs.floor(), fw.floor()], dim=1).long()
    out[~apply, 1] = 0
    out[~apply, 3] = 0
    return out


def to_device(x: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """A CPU tensor on `device` without making the host wait: through pinned memory with a non-blocking copy on
    CUDA (a copy from pageable memory synchronises with the device), unchanged on the CPU."""
    device = torch.device(device)
    if device.type != "cuda" or x.device.type != "cpu":
        return x.to(device)
    return x.pin_memory().to(device, non_blocking=True)


def apply_masks(power: torch.Tensor, masks: torch.Tensor, *, inplace: bool = False, fill: float = 0.0,
                batched: bool | None = None) -> torch.Tensor:
    """Set the masked time columns and mel rows of `[B, ..., F, T]` mel power to `fill` (a new tensor, or `power`
    itself with `inplace`). SpecAugment zeroes mel power before dB; on a log-mel, `fill` DB_FLOOR gives the same
    values (to_db(0) is DB_FLOOR). A mask covers [start, start + width) clipped to the input, as torchaudio's
    mask_along_axis compares positions (a start below 0, drawn when a mask is wider than the input, is not wrapped).

    `batched` (default: on any device but the CPU) masks the whole batch at once: two broadcast boolean tensors
    compared on the device, so nothing waits for the host and the ops do not grow with the batch. On the CPU, where
    those two passes over the whole batch cost more than the masks, each sample's masked slices are set instead."""
    out = power if inplace else power.clone()
    if batched is None:
        batched = out.device.type != "cpu"
    if not batched:
        for i, (ts, tw, fs, fw) in enumerate(masks.tolist()):
            if tw > 0 and ts + tw > 0:
                out[i, ..., max(ts, 0):ts + tw] = fill
            if fw > 0 and fs + fw > 0:
                out[i, ..., max(fs, 0):fs + fw, :] = fill
        return out
    b, f, t = out.shape[0], out.shape[-2], out.shape[-1]
    m = to_device(masks.to(torch.int64), out.device)
    lead = (b,) + (1,) * (out.dim() - 3)
    ts, tw, fs, fw = (c.reshape(*lead, 1, 1) for c in m.unbind(1))
    cols = torch.arange(t, device=out.device)
    rows = torch.arange(f, device=out.device)[:, None]
    out.masked_fill_((cols >= ts) & (cols < ts + tw), fill)
    out.masked_fill_((rows >= fs) & (rows < fs + fw), fill)
    return out


def spec_augment(power: torch.Tensor, generator: torch.Generator | None = None, *, inplace: bool = False,
                 fill: float = 0.0, batched: bool | None = None, **kw) -> torch.Tensor:
    """SpecAugment on a batch of mel power `[B, ..., 257, T]` (before dB; on a log-mel with `fill` DB_FLOOR), one
    draw per sample (`apply_masks`)."""
    masks = spec_augment_params(power.shape[0], power.shape[-1], generator, **kw)
    return apply_masks(power, masks, inplace=inplace, fill=fill, batched=batched)


def mix_seed(seed: int, *parts: int) -> int:
    """A 63-bit seed derived from `seed` and a position (epoch, rank, step...): the same position, the same seed."""
    mixed = int(seed)
    for p in parts:
        mixed = (mixed * 1_000_003 + int(p) + 1) % (2**63 - 1)
    return mixed


def position_generator(seed: int, *parts: int) -> torch.Generator:
    """A CPU generator seeded by `mix_seed(seed, *parts)`, reproducible across runs and resumes."""
    g = torch.Generator()
    g.manual_seed(mix_seed(seed, *parts))
    return g

