"""LVS and SSL-Align as the negative-audio evaluation code (xavijuanola/vssl_eval, `models/model_lvs.py` AVENet and
`datasets/datasets_lvs.py`) evaluates both: one network and one preprocessing, `lvs` and `ssl_align` differing only in
their checkpoints.

Network (parameter names as the official `imgnet` / `audnet`, so released state dicts load strictly; no download): two
SSL-TIE-style ResNet-18 trunks (trainer.model.ResNet18: layer4 without stride, 512 x 14 x 14 at 224 px; the audio
trunk's 1-channel stem `conv1_a`), the visual map L2-normalised over channels, the audio map globally max-pooled and
L2-normalised. Map: the cosine itself (the official `A`), no rescaling.

Inputs (the official test dataset):
- image: to tensor, bicubic resize to 224 x 224 (torchvision's tensor resize, antialiased), ImageNet normalisation.
- audio: the file's channel 0 at its own rate (soundfile's float scale), tiled to the test length (10 s; S4 5 s) and
  cut, then the 3 s around its middle (3.5-6.5 s; S4 1-4 s, indexed at 16 kHz as the official code does), clipped to
  [-1, 1]; scipy.signal.spectrogram (nperseg 512, noverlap 353), log(x + 1e-7), divided by 12 -> [1, 257, T]
  (T = 299 at 16 kHz).
- silence and noise: the same 3 s of zeros and of N(0, 1) noise (pipeline.load.negatives.noise_waveforms), through the
  same log spectrogram: unlike the EZ-VSL family's, these are log-compressed (silence = log(1e-7) / 12 everywhere).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from eval.inputs import read_audio
from eval.models.ezvsl import SPEC_SCALE, SpectrogramInputs, spectrogram
from pipeline.load.negatives import noise_waveforms
from trainer.model import ResNet18

FAMILY = ("lvs", "ssl_align")
WINDOW = 3.0               # seconds the official test dataset cuts from the middle of the test length
INDEX_RATE = 16000         # ... indexing them at 16 kHz whatever the file's rate


class LVSNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.imgnet = ResNet18("vision")
        self.audnet = ResNet18("audio")

    def encode_image(self, image: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(self.imgnet(image), dim=1)

    def encode_audio(self, spec: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(self.audnet(spec).amax(dim=(2, 3)), dim=1)


def _window(seconds: float) -> tuple[int, int]:
    start = seconds / 2 - WINDOW / 2
    return int(INDEX_RATE * start), int(INDEX_RATE * (start + WINDOW))


def log_spectrogram(wave: np.ndarray, rate: int) -> torch.Tensor:
    """[1, 257, T]: log(scipy spectrogram + 1e-7) / 12 with the official settings, float32."""
    spec = spectrogram(wave, rate, noverlap=353)
    return (torch.from_numpy(np.log(spec + 1e-7)).unsqueeze(0) / SPEC_SCALE).float()


@dataclass
class WindowInputs(SpectrogramInputs):
    """vssl_eval's LVS / SSL-Align inputs (module docstring); the image transform is the EZ-VSL family's."""

    def audio(self, path, seconds: float) -> torch.Tensor:
        wave, rate = read_audio(path)                   # soundfile's scale, as the official sf.read
        mono = wave[:, 0].astype(np.float64)
        length = int(rate * seconds)
        if mono.shape[0] < length:
            mono = np.tile(mono, int(rate * seconds / mono.shape[0]) + 1)
        start, stop = _window(seconds)
        return log_spectrogram(np.clip(mono[:length][start:stop], -1.0, 1.0), rate)

    def silence(self, seconds: float, device) -> torch.Tensor:
        start, stop = _window(seconds)
        return log_spectrogram(np.zeros(stop - start), INDEX_RATE).unsqueeze(0).to(device)

    def noise(self, seed: int, indices, seconds: float, device) -> torch.Tensor:
        start, stop = _window(seconds)
        waves = noise_waveforms(seed, indices, stop - start).double().numpy()
        return torch.stack([log_spectrogram(w, INDEX_RATE) for w in waves]).to(device)


def network(name: str) -> nn.Module:
    return LVSNet()


INPUTS = WindowInputs()
MAP = (1.0, 0.0)            # the cosine itself (the official A)
