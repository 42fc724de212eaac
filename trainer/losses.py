"""SSL-TIE's LVS tri-map contrastive loss and SSL-SaN's silence/noise terms, always computed in float32.

Notation (REFERENCE.md B.2): S_ij(p) = <v_i(p), a_j> is the raw cosine between image i's pixel p and audio j;
A_i = S_ii is the localization map. With sigma the sigmoid and soft mask P(x) = sigma((x - eps+)/tau):
- positive score  s+_i  = sum_p P(A_i) A_i / sum_p P(A_i)
- hard negative   s^hn_i = sum_p N_i A_i / sum_p N_i,  N_i = 1 - sigma((A_i - eps-)/tau) (tri-map) or 1 - P(A_i)
- easy negatives  s_ij  = sum_p P(S_ij) S_ij / sum_p P(S_ij), times (1 - 100 I): the diagonal is multiplied by -99
  (SSL-TIE's quirk; `diagonal: exclude` drops it instead)
- SSL-SaN (switches S, N): s^S_i and s^N_i, the same soft-masked score of S(a_S, v_i) and S(a_N_i, v_i).
Logits of row i: [s+_i, s_i1 .. s_iB, s^hn_i, s^S_i, s^N_i] / T, target 0, cross-entropy averaged over rows.
No epsilon is added to the denominators (as SSL-TIE); the sigmoid of a large negative argument stays > 0 in fp32.
L_S and L_N: the squared map S(a_neg, v_j) reduced over pixels by `sum` (the paper's squared L2 norm) or `mean`,
then averaged over images.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from trainer.config import ContrastiveConfig


def soft_score(sim: torch.Tensor, threshold: float, tau: float) -> torch.Tensor:
    """Soft-masked mean of a similarity map over its last two dims: sum(P*S)/sum(P), P = sigmoid((S - thr)/tau)."""
    mask = torch.sigmoid((sim - threshold) / tau)
    return (mask * sim).flatten(-2).sum(-1) / mask.flatten(-2).sum(-1)


def contrastive_logits(
    v: torch.Tensor,
    a: torch.Tensor,
    cfg: ContrastiveConfig,
    offset: int = 0,
    negative_maps: list[torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits [b, K] (target index 0) and the paired map A [b, 1, h, w] for local images against all audios.

    v: unit-norm visual maps [b, C, h, w] of this process's images; a: unit-norm audio vectors [B, C] of the whole
    (possibly all-gathered) batch, where image i's own audio is row `offset + i`. `negative_maps`: optional maps
    [b, 1, h, w] of each image with a negative audio (`negative_map`), whose soft-masked scores are appended.
    """
    v = v.float()
    a = a.float()
    b = v.shape[0]
    idx = torch.arange(b, device=v.device)
    cross = torch.einsum("bchw,kc->bkhw", v, a)  # [b, B, h, w]
    A = cross[idx, offset + idx].unsqueeze(1)  # [b, 1, h, w]
    pos = soft_score(A, cfg.epsilon, cfg.tau)  # [b, 1]
    easy = soft_score(cross, cfg.epsilon, cfg.tau)  # [b, B]
    if cfg.diagonal == "ssl_tie":
        mask = torch.ones_like(easy)
        mask[idx, offset + idx] = -99.0
        easy = easy * mask
    else:   # row i without column offset + i, by index arithmetic (a boolean mask would wait for the device)
        cols = torch.arange(easy.shape[1] - 1, device=v.device)[None, :]
        easy = easy.gather(1, cols + (cols >= (offset + idx)[:, None]).long())
    parts = [pos, easy]
    if cfg.hard_negative:
        if cfg.trimap:
            neg_mask = 1.0 - torch.sigmoid((A - cfg.epsilon2) / cfg.tau)
        else:
            neg_mask = 1.0 - torch.sigmoid((A - cfg.epsilon) / cfg.tau)
        parts.append((neg_mask * A).flatten(-2).sum(-1) / neg_mask.flatten(-2).sum(-1))
    for neg_map in negative_maps or []:
        parts.append(soft_score(neg_map.float(), cfg.epsilon, cfg.tau))
    return torch.cat(parts, dim=1) / cfg.temperature, A


def contrastive_loss(logits: torch.Tensor) -> torch.Tensor:
    """Cross-entropy with target 0 (the positive), averaged over rows."""
    target = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
    return F.cross_entropy(logits.float(), target)


def negative_map(v: torch.Tensor, a_neg: torch.Tensor) -> torch.Tensor:
    """Cosine map [b, 1, h, w] of each image with a negative audio: a_neg is [b, C] (one per image) or [1, C] (shared)."""
    return torch.einsum("bchw,bc->bhw", v.float(), a_neg.float().expand(v.shape[0], -1)).unsqueeze(1)


def negative_map_loss(neg_map: torch.Tensor, reduction: str) -> torch.Tensor:
    """L_S / L_N: the squared map summed (`sum`, the paper's ||.||_2^2) or averaged (`mean`) over pixels, then
    averaged over images. Zero iff every map is zero."""
    per_image = neg_map.float().pow(2).flatten(1)
    per_image = per_image.sum(1) if reduction == "sum" else per_image.mean(1)
    return per_image.mean()
