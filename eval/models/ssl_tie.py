"""SSL-TIE's released checkpoints (`--model ssl_tie`): the official `.pth.tar` (its `state_dict`, DataParallel names)
read safely (eval.models.weights) into this project's AVENet, which is SSL-TIE's network with SSL-TIE's parameter
names (trainer.model; width 64: 512-channel features, 14 x 14 maps at 224 px), with the inputs and map of our own
checkpoints (eval.models.ssl_san: log-mel, the cosine map) and negatives as the group's SSL-TIE evaluation feeds them
(linear mel power: silence 0, noise not in dB)."""
from __future__ import annotations

from torch import nn

from eval.models.ssl_san import LogmelInputs
from trainer.config import ModelConfig
from trainer.model import AVENet

FAMILY = ("ssl_tie",)


def network(name: str) -> nn.Module:
    return AVENet(ModelConfig(width=64))


INPUTS = LogmelInputs(224, silence_db=False, noise_db=False)
MAP = (1.0, 0.0)            # the cosine itself
