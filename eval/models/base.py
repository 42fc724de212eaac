"""What `eval.run` needs of a model family: its network, its input preprocessing and the map its official evaluation
scores. One `Adapter` per evaluated checkpoint; `eval.models.load_adapter` builds it from `--model NAME --ckpt FILE`.

- `net.encode_image(images [B, 3, S, S]) -> [B, C, h, w]` and `net.encode_audio(inputs [B, ...]) -> [B, C]`: the
  unit-norm visual feature map and audio embedding whose dot product is the cosine map; they are also the embeddings
  of Table 1 and the retrieval (mean or peak of the visual map, eval.store).
- `inputs`: the family's preprocessing as its official evaluation does it (image transform, audio representation, the
  silence and noise inputs); picklable, as the DataLoader workers call it.
- The stored map is `map_scale * cosine + map_shift`: the raw similarity the official evaluation thresholds
  (SSL-TIE / SSL-SaN: the cosine itself; EZ-VSL, SLAVC, FNAC: (cosine + 1) / 2). Ranks, and so retrieval, do not
  change; fixed thresholds (0.5) and Sep's units do.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import torch


class Inputs(Protocol):
    """A model family's inputs (every tensor float32)."""

    def image(self, path) -> torch.Tensor:
        """[3, S, S], normalised as the network expects."""

    def audio(self, path, seconds: float) -> torch.Tensor:
        """The audio input of one file, `seconds` long as the test set prescribes."""

    def silence(self, seconds: float, device) -> torch.Tensor:
        """The silence input, batch of 1."""

    def noise(self, seed: int, indices, seconds: float, device) -> torch.Tensor:
        """The noise inputs of the samples `indices` in the evaluation pass `seed` (pipeline.load.negatives draws the
        waveforms: a sample's noise depends only on (seed, index))."""


@dataclass
class Adapter:
    name: str                            # the family (`--model`)
    net: torch.nn.Module                 # encode_image / encode_audio, see above
    inputs: Inputs
    map_scale: float = 1.0
    map_shift: float = 0.0
    train_seed: int | None = None        # what the checkpoint says of its training, where it says it
    train_san: dict = field(default_factory=dict)
    run_name: str = ""                   # the row name when --name is not given

    def to_map(self, cosine: torch.Tensor) -> torch.Tensor:
        """The official evaluation's map from the cosine map (identity for scale 1, shift 0)."""
        if self.map_scale == 1.0 and self.map_shift == 0.0:
            return cosine
        return cosine * self.map_scale + self.map_shift
