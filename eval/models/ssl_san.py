"""SSL-SaN and SSL-TIE checkpoints of this project's trainer (`--model ssl_san`, the default): AVENet from a
safetensors + YAML step directory (trainer.checkpoint: no code from the checkpoint runs), its log-mel inputs
(pipeline.load.features) and the cosine map itself, as the group's SSL-TIE evaluation scores it."""
from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from eval.inputs import load_image, load_waveform
from eval.models.base import Adapter
from pipeline.load.features import logmel, seconds_to_samples
from pipeline.load.negatives import noise_logmels, silence_logmel
from trainer.checkpoint import load_model, resolve


@dataclass
class LogmelInputs:
    """ImageNet-normalised bicubic square images; channel 0 at 16 kHz tiled to the test length -> log-mel [1, 257, T];
    silence and noise as pipeline.load.negatives builds them (linear or dB, as the checkpoint was trained)."""
    image_size: int = 224
    silence_db: bool = False
    noise_db: bool = False

    def image(self, path) -> torch.Tensor:
        return load_image(path, self.image_size)

    def audio(self, path, seconds: float) -> torch.Tensor:
        return logmel(load_waveform(path, seconds_to_samples(seconds))).unsqueeze(0)

    def silence(self, seconds: float, device) -> torch.Tensor:
        return silence_logmel(1, seconds_to_samples(seconds), db=self.silence_db, device=device)

    def noise(self, seed: int, indices, seconds: float, device) -> torch.Tensor:
        return noise_logmels(seed, indices, seconds_to_samples(seconds), db=self.noise_db, device=device)


def run_name(ckpt: str) -> str:
    """The training run's folder name (runs/<name>/checkpoints/step_...; for one seed of several,
    runs/<name>/seed-<k>/..., the recipe's name), else the step folder's name."""
    step = resolve(ckpt)
    if step.parent.name != "checkpoints":
        return step.name
    run = step.parent.parent
    return run.parent.name if re.fullmatch(r"seed-\d+", run.name) else run.name


def wrap(model: torch.nn.Module, image_size: int = 224, silence_db: bool = False, noise_db: bool = False,
         **info) -> Adapter:
    """The adapter of an AVENet already in memory (`info`: train_seed, train_san, run_name)."""
    return Adapter("ssl_san", model, LogmelInputs(image_size, silence_db, noise_db), **info)


def load(ckpt: str, image_size: int, silence_db: bool | None, noise_db: bool | None) -> Adapter:
    """The adapter of a step or run directory; `silence_db` / `noise_db` None: as the checkpoint was trained."""
    model, train_cfg = load_model(ckpt)
    san = train_cfg.san
    return wrap(model, image_size, san.silence_db if silence_db is None else silence_db,
                san.noise_db if noise_db is None else noise_db, train_seed=train_cfg.seed,
                train_san={"S": san.silence_negative, "N": san.noise_negative, "L_S": san.silence_map_loss,
                              "L_N": san.noise_map_loss}, run_name=run_name(ckpt))
