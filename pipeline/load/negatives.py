"""The silence and noise inputs: the one place that builds them, for training (`trainer.objective`) and evaluation
(`eval.run`) alike (../shared/REFERENCE.md C and D.6).

- Silence: the log-mel of a zero waveform, identical for every sample: 0 (linear mel power) or -100 dB with `db`.
- Noise: the log-mel of N(0, 1) waveforms through the project's one mel (`features.mel_power`), linear unless `db`.
  Training draws a batch from the trainer's own generator (`noise_logmel`); evaluation draws one waveform per
  (pass seed, sample index) (`noise_logmels`), so a sample's noise depends neither on batching nor on which other
  samples are evaluated.
dB on negatives is a switch because the group's SSL-TIE evaluation feeds linear mel power for negatives.
"""
from __future__ import annotations

import torch

from pipeline.load.features import DB_FLOOR, N_MELS, mel_power, num_frames, position_generator, to_db, to_device


def silence_logmel(batch: int, num_samples: int, *, db: bool = False,
                   device: torch.device | str = "cpu") -> torch.Tensor:
    """The silence input `[B, 1, 257, T]`: mel of a zero waveform = 0 (or -100 dB with `db`)."""
    shape = (batch, 1, N_MELS, num_frames(num_samples))
    return torch.full(shape, DB_FLOOR if db else 0.0, dtype=torch.float32, device=device)


def noise_logmel(batch: int, num_samples: int, generator: torch.Generator, *, db: bool = False,
                 device: torch.device | str = "cpu") -> torch.Tensor:
    """The noise input `[B, 1, 257, T]`: mel power of N(0, 1) waveforms, a fresh draw per sample (dB with `db`).

    The waveform is drawn on the generator's device and moved to `device`, so a seed gives the same noise anywhere."""
    wave = torch.randn(batch, 1, num_samples, generator=generator, device=generator.device)
    power = mel_power(wave.to(device))
    return to_db(power) if db else power


def noise_waveforms(seed: int, indices, num_samples: int) -> torch.Tensor:
    """The N(0, 1) noise waveforms `[len(indices), num_samples]` of the given samples in the evaluation pass with
    `seed`, on the CPU: sample i's comes from a generator seeded with (seed, i). Every model family's noise input is
    computed from these."""
    return torch.cat([torch.randn(1, num_samples, generator=position_generator(seed, int(i))) for i in indices])


def noise_logmels(seed: int, indices, num_samples: int, *, db: bool = False,
                  device: torch.device | str = "cpu") -> torch.Tensor:
    """Noise inputs `[len(indices), 1, 257, T]` of the given samples in the evaluation pass with `seed`: sample i's
    waveform comes from a generator seeded with (seed, i); the log-mels of all of them in one pass on `device`."""
    power = mel_power(to_device(noise_waveforms(seed, indices, num_samples).unsqueeze(1), device))
    return to_db(power, inplace=True) if db else power
