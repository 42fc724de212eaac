"""SSL-TIE's AVENet: two ResNet-18 encoders trained from scratch and the raw audio-visual cosine map.

Layout and parameter names follow SSL-TIE (`models/model.py`, `networks/base_models.py`) so that an official
checkpoint loads with `strict=True` (after removing DataParallel's `module.` prefix):
- `imgnet` / `audnet`: ResNet-18 (BasicBlock [2, 2, 2, 2]), 7x7 stride-2 stem, max-pool, layer2/layer3 stride 2 and
  **layer4 stride 1** (total stride 16: 224 px -> 14x14 map; 257x670 log-mel -> 17x42). The image stream uses `conv1`
  (3 channels), the audio stream `conv1_a` (1 channel).
- The audio map is global-MAX-pooled to a vector (SSL-TIE stores the pool as `avgpool`); visual features are
  L2-normalized over channels at every pixel, the audio vector over channels.
- Parameters SSL-TIE creates but never uses for the outputs are kept (and frozen, so DDP needs no unused-parameter
  search): per encoder `conv1_flow` (6-channel stem), the unused stem of the other modality, `fc` (Linear 512->1000);
  on AVENet `vision_fc1` (1x1 conv 1024->512), `conv3` (1x1 conv) and `norm3` (BatchNorm2d(1)). SSL-TIE runs
  conv3/norm3 and discards the result; here they are not run (the outputs are identical).
- Init as AVENet: Kaiming-normal (fan_out, ReLU) for every Conv2d, BatchNorm weight ~ N(1, 0.02), bias 0; Linear layers
  keep PyTorch's default init.
`width` scales every channel count (64 = the real ResNet-18, 512-d features); smaller widths give the same code path for
CPU demos and tests.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from trainer.config import ModelConfig


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 convs with BatchNorm and an identity (or 1x1 projection) shortcut."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class ResNet18(nn.Module):
    """SSL-TIE's ResNet-18 trunk for one modality (`vision` uses conv1, `audio` uses conv1_a); returns layer4's map."""

    def __init__(self, modal: str, width: int = 64):
        super().__init__()
        self.modal = modal
        self.conv1_a = nn.Conv2d(1, width, 7, 2, 3, bias=False)
        self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
        self.conv1_flow = nn.Conv2d(6, width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        chans = [width, 2 * width, 4 * width, 8 * width]
        strides = [1, 2, 2, 1]
        cin = width
        for k, (c, s) in enumerate(zip(chans, strides), start=1):
            setattr(self, f"layer{k}", nn.Sequential(BasicBlock(cin, c, s), BasicBlock(c, c, 1)))
            cin = c
        self.fc = nn.Linear(8 * width, 1000)
        unused = [self.conv1_flow, self.fc, self.conv1 if modal == "audio" else self.conv1_a]
        for module in unused:
            module.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1_a(x) if self.modal == "audio" else self.conv1(x)
        x = self.maxpool(self.relu(self.bn1(x)))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


class AVENet(nn.Module):
    """SSL-TIE's audio-visual network: `forward(image, logmel)` gives the raw cosine map and the cross-similarities."""

    def __init__(self, cfg: ModelConfig | None = None):
        super().__init__()
        cfg = cfg or ModelConfig()
        self.cfg = cfg
        w = cfg.width
        self.imgnet = ResNet18("vision", w)
        self.audnet = ResNet18("audio", w)
        self.avgpool = nn.AdaptiveMaxPool2d((1, 1))  # SSL-TIE's name; it is a global max pool
        self.vision_fc1 = nn.Conv2d(16 * w, 8 * w, 1)
        self.conv3 = nn.Conv2d(1, 1, 1)
        self.norm3 = nn.BatchNorm2d(1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.normal_(m.weight, mean=1.0, std=0.02)
                nn.init.constant_(m.bias, 0.0)
        for module in (self.vision_fc1, self.conv3, self.norm3):
            module.requires_grad_(False)

    @property
    def feature_dim(self) -> int:
        return 8 * self.cfg.width

    def encode_image(self, image: torch.Tensor) -> torch.Tensor:
        """[B, 3, S, S] -> unit-norm visual map [B, C, S/16, S/16]."""
        return F.normalize(self.imgnet(image), dim=1)

    def encode_audio(self, logmel: torch.Tensor) -> torch.Tensor:
        """[B, 1, F, T] -> unit-norm audio vector [B, C] (global max pool over the audio map)."""
        return F.normalize(self.avgpool(self.audnet(logmel)).flatten(1), dim=1)

    @staticmethod
    def similarity(v: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """Cross similarity S[i, j] = <v_i(p), a_j>: v [B, C, h, w], a [K, C] -> [B, K, h, w] (raw cosines)."""
        return torch.einsum("bchw,kc->bkhw", v, a)

    @staticmethod
    def paired_map(v: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """Map of each image with its own audio: v [B, C, h, w], a [B, C] -> [B, 1, h, w]."""
        return torch.einsum("bchw,bc->bhw", v, a).unsqueeze(1)

    def forward(self, image: torch.Tensor, logmel: torch.Tensor) -> dict[str, torch.Tensor]:
        """map [B,1,h,w] raw cosine of each pair; logits_matrix [B,B] = max over pixels of S[i(image), j(audio)]
        (SSL-TIE's `A0_ref`, the retrieval score); v [B,C,h,w] and a [B,C] unit-norm features."""
        v = self.encode_image(image)
        a = self.encode_audio(logmel)
        cross = self.similarity(v, a)
        return {"map": self.paired_map(v, a), "logits_matrix": cross.amax(dim=(2, 3)), "v": v, "a": a}
