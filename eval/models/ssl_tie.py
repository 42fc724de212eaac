"""SSL-TIE's released checkpoints (`--model ssl_tie`): the official `.pth.tar` (its `state_dict`, DataParallel names)
read safely (eval.models.weights) into this project's AVENet, which is SSL-TIE's network with SSL-TIE's parameter
names (trainer.model; width 64: 512-channel features, 14 x 14 maps at 224 px), with the inputs and map of our own
checkpoints (eval.models.ssl_san: log-mel, the cosine map) and negatives as the group's SSL-TIE evaluation feeds them
(linear mel power: silence 0, noise not in dB); the image through the evaluation code's own transform
(eval.inputs.official_image: no clamp after the bicubic resize, unlike our checkpoints' eval.inputs.load_image)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from eval.inputs import official_image
from eval.models.base import Adapter
from eval.models.ssl_san import LogmelInputs
from eval.models.weights import load_strict, read_weights
from trainer.config import ModelConfig
from trainer.model import AVENet

FAMILY = ("ssl_tie",)


@dataclass
class ReleasedInputs(LogmelInputs):
    def image(self, path) -> torch.Tensor:
        return official_image(path, self.image_size)


def network(name: str) -> nn.Module:
    return AVENet(ModelConfig(width=64))


def load(name: str, ckpt: str) -> Adapter:
    net = network(name)
    load_strict(net, read_weights(ckpt, name), ckpt)
    return Adapter(name, net.eval(), ReleasedInputs(224, silence_db=False, noise_db=False), run_name=name)
