"""The EZ-VSL family as the negative-audio evaluation code (xavijuanola/vssl_eval, `models/model.py` and
`datasets/datasets.py`) evaluates it: `ezvsl` and `fnac` (one network: FNAC's extra modules hold no weights) and
`slavc` (two projections a side, and the momentum copies its checkpoints carry).

Networks (parameter names as the official classes, so released state dicts load strictly; built without
downloading anything): torchvision ResNet-18 image encoder with pooling and classifier removed, a 1x1 conv projection
to 512 and L2 normalisation over channels -> [B, 512, 7, 7] at 224 px; ResNet-18 audio encoder on a 1-channel
spectrogram with global max pooling, a linear projection to 512, L2-normalised. SLAVC: projections 1 and 2 on both
sides; its map is the mean of the two cosine maps, which is the dot product of the concatenated features scaled by
1/sqrt(2) (what encode_image / encode_audio return, still unit-norm). The momentum encoders are loaded and unused
(the official evaluation runs with use_mom_eval off).
Map: (cosine + 1) / 2, the official `Savl` (eval.models.base: map_scale 0.5, shift 0.5).

Inputs (vssl_eval `load_spectrogram` + the test dataset's transforms, which FNAC's evaluation also ends up using):
- image: to tensor, bicubic resize to 224 x 224 (torchvision's tensor resize, antialiased), ImageNet normalisation;
  no clamp after the resize.
- audio: the file at its own rate as 16-bit integers over 32767 (the official reader's scale), channels averaged
  after clipping to [-1, 1] (the official reader lets FFmpeg downmix), the first `seconds` (10 s; S4 5 s)
  tiled when shorter, rolled so the file's centre sits at the window's centre; scipy.signal.spectrogram (nperseg 512,
  noverlap 274: its default Tukey window, density scaling), log(x + 1e-7); the centre 200 frames of the 257 bins,
  divided by 12 -> [1, 257, 200].
- silence: the spectrogram of zeros, not log-compressed: all zeros. Noise: the spectrogram of the N(0, 1) waveform
  (pipeline.load.negatives.noise_waveforms, 16 kHz), not log-compressed, then the same crop and scale: both exactly as
  the official code feeds them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torchvision.transforms.functional as TF
from scipy import signal
from torch import nn
from torchvision.models import resnet18

from eval.inputs import load_image, read_audio
from pipeline.load.features import SAMPLE_RATE
from pipeline.load.negatives import noise_waveforms

FAMILY = ("ezvsl", "fnac", "slavc")
DIM = 512
SPEC_CROP = (257, 200)      # the official audio_transform's CenterCrop
SPEC_SCALE = 12.0           # and its Normalize(mean=0, std=12)


def _image_encoder() -> nn.Module:
    net = resnet18(weights=None)
    net.avgpool, net.fc = nn.Identity(), nn.Identity()
    return net


def _audio_encoder() -> nn.Module:
    net = resnet18(weights=None)
    net.conv1 = nn.Conv2d(1, 64, kernel_size=(7, 7), stride=(2, 2), padding=(3, 3), bias=False)
    net.avgpool, net.fc = nn.AdaptiveMaxPool2d((1, 1)), nn.Identity()
    return net


def _grid(features: torch.Tensor) -> torch.Tensor:
    """The flattened [B, 512 h w] ResNet output as [B, 512, h, w] (square inputs)."""
    side = math.isqrt(features.shape[1] // 512)
    return features.unflatten(1, (512, side, side))


class EZVSLNet(nn.Module):
    """EZ-VSL's and FNAC's network."""

    def __init__(self, dim: int = DIM):
        super().__init__()
        self.imgnet = _image_encoder()
        self.img_proj = nn.Conv2d(512, dim, kernel_size=(1, 1))
        self.audnet = _audio_encoder()
        self.aud_proj = nn.Linear(512, dim)

    def encode_image(self, image: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(self.img_proj(_grid(self.imgnet(image))), dim=1)

    def encode_audio(self, spec: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(self.aud_proj(self.audnet(spec)), dim=1)


class SLAVCNet(nn.Module):
    """SLAVC's network: two projections a side, and the momentum copies its checkpoints carry."""

    def __init__(self, dim: int = DIM):
        super().__init__()
        for prefix in ("", "momentum_"):         # the encoders, then their momentum copies (official order)
            modules = {"imgnet": _image_encoder(), "img_proj1": nn.Conv2d(512, dim, kernel_size=(1, 1)),
                       "img_proj2": nn.Conv2d(512, dim, kernel_size=(1, 1)), "audnet": _audio_encoder(),
                       "aud_proj1": nn.Linear(512, dim), "aud_proj2": nn.Linear(512, dim)}
            for name, module in modules.items():
                self.add_module(prefix + name, module)

    def encode_image(self, image: torch.Tensor) -> torch.Tensor:
        img = _grid(self.imgnet(image))
        one, two = (nn.functional.normalize(p(img), dim=1) for p in (self.img_proj1, self.img_proj2))
        return torch.cat([one, two], dim=1) / math.sqrt(2.0)

    def encode_audio(self, spec: torch.Tensor) -> torch.Tensor:
        aud = self.audnet(spec)
        one, two = (nn.functional.normalize(p(aud), dim=1) for p in (self.aud_proj1, self.aud_proj2))
        return torch.cat([one, two], dim=1) / math.sqrt(2.0)


def _spec_transform(spec: np.ndarray) -> torch.Tensor:
    """The official audio_transform: [F, T] -> centre crop (257, 200) -> / 12, float32 [1, 257, 200]."""
    t = TF.center_crop(torch.from_numpy(spec).unsqueeze(0), list(SPEC_CROP))
    return (t / SPEC_SCALE).float()


def spectrogram(wave: np.ndarray, rate: int, noverlap: int = 274) -> np.ndarray:
    """scipy.signal.spectrogram as the official loaders call it (nperseg 512; noverlap 274 for this family, 353 for
    LVS's): [257, T] power spectral density."""
    return signal.spectrogram(wave, rate, nperseg=512, noverlap=noverlap)[2]


@dataclass
class SpectrogramInputs:
    """vssl_eval's EZ-VSL-family inputs (module docstring)."""
    image_size: int = 224

    def image(self, path) -> torch.Tensor:
        return load_image(path, self.image_size)

    def audio(self, path, seconds: float) -> torch.Tensor:
        wave, rate = read_audio(path)                            # [frames, channels]
        # the official reader converts to 16-bit integers and divides by 32767 (np.iinfo(int16).max)
        ints = np.clip(np.rint(wave.astype(np.float64) * 32768.0), -32768, 32767)
        mono = np.clip(ints / 32767.0, -1.0, 1.0).mean(axis=1)
        length = int(rate * seconds)
        file_seconds = wave.shape[0] / rate
        mono = mono[:length]                                     # the official reader stops at `seconds`
        if mono.shape[0] < length:
            mono = np.tile(mono, int(rate * seconds / mono.shape[0]) + 1)
        mono = mono[:length]
        mono = np.roll(mono, int(rate * seconds / 2) - int(file_seconds / 2 * rate))
        return _spec_transform(np.log(spectrogram(mono, rate) + 1e-7))

    def silence(self, seconds: float, device) -> torch.Tensor:
        return torch.zeros((1, 1, *SPEC_CROP), device=device)

    def noise(self, seed: int, indices, seconds: float, device) -> torch.Tensor:
        waves = noise_waveforms(seed, indices, int(SAMPLE_RATE * seconds)).double().numpy()
        return torch.stack([_spec_transform(spectrogram(w, SAMPLE_RATE)) for w in waves]).to(device)


def network(name: str) -> nn.Module:
    return SLAVCNet() if name == "slavc" else EZVSLNet()


INPUTS = SpectrogramInputs()
MAP = (0.5, 0.5)            # Savl = (cosine + 1) / 2
