"""One training step's forward pass and loss: SSL-TIE (two views + equivariance) plus SSL-SaN's silence and noise.

`Objective` wraps AVENet so that DDP sees a single forward call (gradients of everything, the all-gather included,
are synchronised). Per step:
1. audio: the real log-mels, the silence input (one shared row, or one per image) and one noise input per image are
   encoded in ONE concatenated batch, so BatchNorm never sees a silence-only batch (REFERENCE.md C, pitfall 3).
2. with `gather_features` the real audio vectors of all processes are all-gathered with gradients
   (torch.distributed.nn), so every image is contrasted with the global batch.
3. view 1: L_cl on the original image; view 2 (equivariance on): L_cl_t on the transformed image, same audio, and
   L_eq = MSE(map of the transformed image, transformed map).
4. SaN: the silence / noise maps of each image give extra negative logits (S, N) and L_S, L_N (squared maps);
   silence / noise inputs given while their switches are off only have their map maxima reported (validation).
Total = 0.5 (L_cl + L_cl_t) + w_eq L_eq + lambda_sn (L_S + L_N)   (SaN terms averaged over the views when
`san.transformed_view`; without equivariance: L_cl + lambda_sn (L_S + L_N)).
The loss block runs with autocast off, in float32.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

from pipeline.load import features, negatives
from trainer.config import TrainConfig
from trainer.equivariance import Transform, equivariance_loss, transform_image, transform_map
from trainer.losses import contrastive_logits, contrastive_loss, negative_map, negative_map_loss
from trainer.model import AVENet


def negative_inputs(cfg: TrainConfig, logmel: torch.Tensor, generator: torch.Generator | None,
                    always: bool = False) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Silence ([1 or B, 1, 257, T]) and noise ([B, 1, 257, T]) log-mels matching `logmel`'s length, when the SaN
    switches use them (or `always`: validation measures their maps for any recipe); the noise waveform has
    (T - 1) * hop samples, the shortest length giving T frames."""
    san = cfg.san
    b, t = logmel.shape[0], logmel.shape[-1]
    samples = (t - 1) * features.HOP
    silence = noise = None
    if san.uses_silence or always:
        rows = b if san.silence_per_sample else 1
        silence = negatives.silence_logmel(rows, samples, db=san.silence_db, device=logmel.device)
    if san.uses_noise or always:
        noise = negatives.noise_logmel(b, samples, generator, db=san.noise_db, device=logmel.device)
    return silence, noise


def gather_with_grad(x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """All-gather [b, C] across processes keeping gradients; returns the global [N*b, C] and this process's offset."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x, 0
    from torch.distributed.nn.functional import all_gather
    return torch.cat(all_gather(x.contiguous()), dim=0), dist.get_rank() * x.shape[0]


class Objective(nn.Module):
    """forward(image, logmel, silence, noise, transform) -> dict of the total `loss` and every (detached) term.
    `gather` (default: cfg.gather_features) all-gathers the audio vectors; validation passes False and asks for
    `return_map` (the original view's map, under the key `map`)."""

    def __init__(self, model: AVENet, cfg: TrainConfig):
        super().__init__()
        self.model = model
        self.cfg = cfg

    def _audio(self, logmel, silence, noise):
        parts = [logmel] + [x for x in (silence, noise) if x is not None]
        a = self.model.encode_audio(torch.cat(parts).to(logmel.dtype))
        b = logmel.shape[0]
        a_pos = a[:b]
        a_sil = a[b:b + silence.shape[0]] if silence is not None else None
        a_noise = a[a.shape[0] - b:] if noise is not None else None
        return a_pos, a_sil, a_noise

    def _view(self, v, audio, terms, suffix, gather):
        """Contrastive loss (+ SaN maps) of one image view against the audio; returns (L_cl, L_SN, map)."""
        cfg = self.cfg
        a_pos, a_sil, a_noise = audio
        a_all, offset = gather_with_grad(a_pos) if gather else (a_pos, 0)
        v = v.float()
        use_san = suffix == "" or cfg.san.transformed_view
        neg_maps, l_sn = [], v.new_zeros(())
        sil_map = negative_map(v, a_sil) if use_san and a_sil is not None else None
        noise_map = negative_map(v, a_noise) if use_san and a_noise is not None else None
        if sil_map is not None and cfg.san.silence_negative:
            neg_maps.append(sil_map)
        if noise_map is not None and cfg.san.noise_negative:
            neg_maps.append(noise_map)
        logits, amap = contrastive_logits(v, a_all.float(), cfg.contrastive, offset, neg_maps)
        l_cl = contrastive_loss(logits)
        terms[f"loss_cl{suffix}"] = l_cl.detach()
        terms[f"max_pos{suffix}"] = amap.detach().flatten(1).amax(1).mean()
        if sil_map is not None:
            terms[f"max_silence{suffix}"] = sil_map.detach().flatten(1).amax(1).mean()
            if cfg.san.silence_map_loss:
                l_s = negative_map_loss(sil_map, cfg.san.reduction)
                terms[f"loss_s{suffix}"] = l_s.detach()
                l_sn = l_sn + l_s
        if noise_map is not None:
            terms[f"max_noise{suffix}"] = noise_map.detach().flatten(1).amax(1).mean()
            if cfg.san.noise_map_loss:
                l_n = negative_map_loss(noise_map, cfg.san.reduction)
                terms[f"loss_n{suffix}"] = l_n.detach()
                l_sn = l_sn + l_n
        return l_cl, l_sn, amap

    def forward(self, image: torch.Tensor, logmel: torch.Tensor, silence: torch.Tensor | None,
                noise: torch.Tensor | None, transform: Transform | None, gather: bool | None = None,
                return_map: bool = False) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        gather = cfg.gather_features if gather is None else gather
        terms: dict[str, torch.Tensor] = {}
        audio = self._audio(logmel, silence, noise)
        v = self.model.encode_image(image)
        with torch.autocast(image.device.type, enabled=False):
            l_cl, l_sn, amap = self._view(v, audio, terms, "", gather)
        if transform is None:
            total = l_cl + cfg.san.lambda_sn * l_sn
        else:
            image_t = transform_image(image, transform)
            audio_t = audio if cfg.encode_audio_once else self._audio(logmel, silence, noise)
            v_t = self.model.encode_image(image_t)
            with torch.autocast(image.device.type, enabled=False):
                l_cl_t, l_sn_t, amap_t = self._view(v_t, audio_t, terms, "_t", gather)
                l_eq = equivariance_loss(amap_t, transform_map(amap, transform, image.shape[-1]))
                terms["loss_eq"] = l_eq.detach()
                if cfg.san.transformed_view:
                    l_sn = 0.5 * (l_sn + l_sn_t)
                total = 0.5 * (l_cl + l_cl_t) + cfg.equivariance.weight * l_eq + cfg.san.lambda_sn * l_sn
        if cfg.san.enabled and (cfg.san.silence_map_loss or cfg.san.noise_map_loss):
            terms["loss_sn"] = l_sn.detach()
        terms["loss"] = total
        if return_map:
            terms["map"] = amap.detach()
        return terms
