"""Which clips are muted, static, clipped or duplicates, from their figures (pipeline.shard.figures) and thresholds.

- muted: at least `muted_fraction` of the clip's 100 ms frames are below `silence_dbfs` (digital silence, a hiss).
- static: `motion` below `static_motion` levels (a still image for the whole clip; clips with one sampled frame
  are not judged).
- clipped: at least `clipped_fraction` of the source samples at (near) full scale.
- duplicates: clips whose centre-frame hash differs in at most `duplicate_image_bits` bits AND whose audio hash differs
  in at most `duplicate_audio_bits` bits form a cluster (transitively: a chain of near-copies is one cluster). In a
  cluster the clip with the smallest id is kept; the others are the duplicates.

`duplicate_clusters` finds every pair within both distances without comparing all pairs: two 64-bit hashes within k
bits agree exactly on at least one of k + 1 bands (pigeonhole), so clips are bucketed by (image band, audio band)
pairs and only clips sharing a bucket are compared.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Mapping

import numpy as np

EXCLUDABLE = ("muted", "static", "clipped", "duplicates")


@dataclass(frozen=True)
class Thresholds:
    silence_dbfs: float = -60.0
    muted_fraction: float = 0.9
    static_motion: float = 2.0
    clipped_fraction: float = 0.01
    # planted re-encoded copies differ by at most 1 and 0 bits; on a 200-clip synthetic corpus the closest distinct
    # pairs differ by (5, 8), (3, 14) and (7, 6) bits (README, "Clip quality")
    duplicate_image_bits: int = 3
    duplicate_audio_bits: int = 6

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def of(cls, settings: Mapping) -> "Thresholds":
        """The thresholds among `settings` (a sharder config as a dict, or the plan's settings)."""
        return cls(**{f.name: settings[f.name] for f in fields(cls)})


def parse_exclude(text: str) -> tuple[str, ...]:
    """`muted,static` -> ("muted", "static") in EXCLUDABLE order; ValueError naming an unknown name."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in EXCLUDABLE]
    if unknown:
        raise ValueError(f"unknown {', '.join(unknown)} (choose from {', '.join(EXCLUDABLE)})")
    return tuple(n for n in EXCLUDABLE if n in names)


def flags(fig: dict, th: Thresholds) -> list[str]:
    """The per-clip flags (all but duplicates) that `fig` raises under `th`, in EXCLUDABLE order."""
    out = []
    if fig["silent_fraction"] >= th.muted_fraction:
        out.append("muted")
    if fig["sampled_frames"] >= 2 and fig["motion"] < th.static_motion:
        out.append("static")
    if fig["clipped_fraction"] >= th.clipped_fraction:
        out.append("clipped")
    return out


def _bands(parts: int) -> list[tuple[int, int]]:
    """(shift, mask) of `parts` (1 to 64) contiguous bands covering 64 bits."""
    edges = np.linspace(0, 64, parts + 1).round().astype(int)
    return [(int(a), (1 << int(b - a)) - 1 if b - a < 64 else (1 << 64) - 1) for a, b in zip(edges[:-1], edges[1:])]


def duplicate_clusters(items: list[tuple[str, str, str]], th: Thresholds) -> list[list[str]]:
    """Clusters (each sorted by id, at least two clips; sorted by first id) of `(id, image_hash, audio_hash)` items
    whose hashes are within both thresholds of another member."""
    if len(items) < 2:
        return []
    ids = [i for i, _, _ in items]
    img = np.array([int(h, 16) for _, h, _ in items], dtype=np.uint64)
    aud = np.array([int(h, 16) for _, _, h in items], dtype=np.uint64)
    parent = list(range(len(items)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for ishift, imask in _bands(th.duplicate_image_bits + 1):
        iband = (img >> np.uint64(ishift)) & np.uint64(imask)
        for ashift, amask in _bands(th.duplicate_audio_bits + 1):
            aband = (aud >> np.uint64(ashift)) & np.uint64(amask)
            order = np.lexsort((aband, iband))
            runs = np.flatnonzero((np.diff(iband[order]) != 0) | (np.diff(aband[order]) != 0)) + 1
            for members in np.split(order, runs):
                for k in range(len(members) - 1):
                    a, rest = members[k], members[k + 1:]
                    near = (np.bitwise_count(img[rest] ^ img[a]) <= th.duplicate_image_bits) \
                        & (np.bitwise_count(aud[rest] ^ aud[a]) <= th.duplicate_audio_bits)
                    for b in rest[near]:
                        ra, rb = root(int(a)), root(int(b))
                        if ra != rb:
                            parent[max(ra, rb)] = min(ra, rb)
    groups: dict[int, list[str]] = {}
    for i in range(len(items)):
        groups.setdefault(root(i), []).append(ids[i])
    return sorted((sorted(g) for g in groups.values() if len(g) > 1), key=lambda g: g[0])


def clusters_of(figures: Mapping[str, dict], th: Thresholds) -> list[list[str]]:
    """`duplicate_clusters` of clips given as {id: their figures}."""
    return duplicate_clusters(sorted((cid, f["image_hash"], f["audio_hash"]) for cid, f in figures.items()), th)


def duplicates_of(clusters: list[list[str]]) -> dict[str, str]:
    """Each duplicate's kept clip (the smallest id of its cluster)."""
    return {cid: c[0] for c in clusters for cid in c[1:]}
