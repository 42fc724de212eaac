"""Embedding metrics of Tables 1 and 3: magnitude, alignment and cross-modal retrieval P@K / A@K.

No public code defines them (REFERENCE.md D.7); the choices made here:
- Embeddings are L2-normalised per sample first (image i and audio i form the positive pair i).
- Alignment = mean over positive pairs of cos(v_i, a_i).
- Magnitude, two readings: `pair_l2` = mean over positive pairs of ||v_i - a_i||_2 (the default: the paper defines
  magnitude, like alignment, on positive pairs, "the L2 distance between both embeddings"), and `modality_gap` =
  ||mean_i v_i - mean_i a_i||_2 (Liang et al. 2022). Both are always reported, under these names.
- Retrieval over the whole test set: image -> audio ranks the N audios for each image query (rows of the score
  matrix), audio -> image ranks the N images for each audio query (columns). The query's own pair stays in the
  gallery unless `exclude_self`. Ties are broken by the lower index. A retrieved item is relevant when its class
  label equals the query's. P@K = mean of (relevant in top K) / K; A@K = fraction of queries with at least one
  relevant item in the top K; both in %.
- Scores: `max_map` = max over pixels of the cosine map between image i's unit-norm feature map and audio j's
  unit-norm embedding (SSL-TIE's `A0_ref`), or `cosine` = cosine of the pooled embeddings.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def l2_normalize(x: np.ndarray, axis: int = -1) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    n = np.linalg.norm(x, axis=axis, keepdims=True)
    return x / np.where(n > 0, n, 1.0)


def pooled_visual_embedding(vis_maps: np.ndarray) -> np.ndarray:
    """[N, C, h, w] feature maps -> [N, C]: the spatial mean of the per-pixel unit-norm features, re-normalised."""
    v = l2_normalize(vis_maps, axis=1)
    return l2_normalize(v.mean(axis=(2, 3)), axis=1)


def max_map_scores(vis_maps: np.ndarray, aud_emb: np.ndarray, chunk: int = 64) -> np.ndarray:
    """[N_img, N_aud] = max over pixels of <V_i(p), a_j> with unit-norm V_i(p) and a_j (blocks of `chunk` images)."""
    a = l2_normalize(aud_emb, axis=1)
    out = np.empty((vis_maps.shape[0], a.shape[0]), dtype=np.float64)
    for s in range(0, vis_maps.shape[0], chunk):
        v = l2_normalize(vis_maps[s:s + chunk], axis=1)                     # [B, C, h, w]
        flat = v.reshape(v.shape[0], v.shape[1], -1).transpose(0, 2, 1)      # [B, hw, C]
        out[s:s + chunk] = (flat @ a.T).max(axis=1)
    return out


def alignment_magnitude(img_emb: np.ndarray, aud_emb: np.ndarray) -> dict:
    v = l2_normalize(img_emb, axis=1)
    a = l2_normalize(aud_emb, axis=1)
    return {
        "alignment": float(np.mean(np.sum(v * a, axis=1))),
        "magnitude_pair_l2": float(np.mean(np.linalg.norm(v - a, axis=1))),
        "magnitude_modality_gap": float(np.linalg.norm(v.mean(axis=0) - a.mean(axis=0))),
    }


def retrieval(scores: np.ndarray, labels: Sequence, ks: Sequence[int] = (1, 5, 10), exclude_self: bool = False) -> dict:
    """P@K and A@K (%) in both directions from an image-by-audio score matrix and per-sample class labels: the means
    over queries of `retrieval_per_query`."""
    out: dict = {"image_to_audio": {}, "audio_to_image": {}}
    for (direction, metric), values in retrieval_per_query(scores, labels, ks, exclude_self).items():
        out[direction][metric] = float(values.mean())
    return out


def retrieval_per_query(scores: np.ndarray, labels: Sequence, ks: Sequence[int] = (1, 5, 10),
                        exclude_self: bool = False) -> dict:
    """{(direction, "P@K" or "A@K"): [N] per query, in %}: what `retrieval` averages, query by query (the gallery is
    the whole test set)."""
    s = np.array(scores, dtype=np.float64)
    if exclude_self:
        np.fill_diagonal(s, -np.inf)
    lab = np.asarray(labels)
    out = {}
    for name, mat in (("image_to_audio", s), ("audio_to_image", s.T)):
        relevant = lab[np.argsort(-mat, axis=1, kind="stable")] == lab[:, None]
        for k in ks:
            out[(name, f"P@{k}")] = 100 * relevant[:, :k].sum(axis=1) / k
            out[(name, f"A@{k}")] = 100 * relevant[:, :k].any(axis=1).astype(np.float64)
    return out      # in the order of `retrieval`'s dict: P@1, A@1, P@5, ... per direction
