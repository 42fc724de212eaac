"""pipeline.shard.figures and pipeline.shard.screening: the figures, flags and duplicate clusters against
hand-computed values."""
from __future__ import annotations

import itertools
import math
import random

import numpy as np
import pytest
from PIL import Image

from pipeline.shard import figures as Q, screening


def test_dbfs_and_audio_figures_by_hand():
    assert Q.dbfs(np.zeros(10)) == Q.FLOOR_DBFS and Q.dbfs(np.zeros(0)) == Q.FLOOR_DBFS
    assert Q.dbfs(np.full(4, 0.5)) == 20 * math.log10(0.5)                  # -6.02 dBFS
    # 1 s: a 0.5-amplitude square wave for 0.4 s, then 0.6 s of digital silence; window = the centre 0.5 s
    x = np.zeros(16000)
    x[:6400] = np.where(np.arange(6400) % 2 == 0, 0.5, -0.5)
    f = Q.audio_figures(np.round(x * 32768).astype(np.int16), window=0.5)
    assert f["rms_dbfs"] == round(20 * math.log10(0.5 * math.sqrt(0.4)), 3)   # power 0.25 over 40% of the clip
    # the centre 0.5 s is samples 4000-12000: 2,400 of them at 0.5
    assert f["window_rms_dbfs"] == round(20 * math.log10(0.5 * math.sqrt(2400 / 8000)), 3)
    assert f["silent_fraction"] == 0.6 and f["clipped_fraction"] == 0.0 and f["channels"] == "mono"


def test_clipping_and_channel_relations():
    # 3 of 8 samples at (near) full scale: 1.0, -1.0 and 0.95 exactly; 0.9499 and 1.02's neighbours are not
    src = np.array([[1.0, -1.0, 0.2, 0.9499], [0.95, 0.2, 0.1, 0.0]])
    f = Q.audio_figures(np.zeros(1600, np.int16), src)
    assert f["clipped_fraction"] == 0.375 and f["channels"] == "distinct"
    assert Q.audio_figures(np.zeros(1600, np.int16), np.array([[1.02, -0.2]]))["clipped_fraction"] == 0.5
    same = np.tile(np.array([0.1, -0.2, 0.3]), (2, 1))
    assert Q.channel_relation(same) == "identical"
    assert Q.channel_relation(np.stack([same[0], np.zeros(3)])) == "one_silent"
    assert Q.channel_relation(np.stack([np.zeros(3), np.zeros(3)])) == "identical"
    assert Q.channel_relation(np.zeros((1, 3))) == "mono"


def _image(value_fn, size=(64, 48)):
    w, h = size
    a = np.fromfunction(value_fn, (h, w, 3)).clip(0, 255).astype(np.uint8)
    return Image.fromarray(a)


def test_thumbnail_is_the_mean_of_each_cell():
    g = np.arange(12, dtype=np.float64).reshape(3, 4)
    # 2 x 2 cells of a 3 x 4 image: rows [0] and [1, 2], columns [0, 1] and [2, 3]
    np.testing.assert_array_equal(Q.thumbnail(g, 2), [[0.5, 2.5], [(4 + 5 + 8 + 9) / 4, (6 + 7 + 10 + 11) / 4]])
    # smaller than the thumbnail: each pixel repeats
    np.testing.assert_array_equal(Q.thumbnail(np.array([[0.0, 10.0]]), 4), [[0, 0, 10, 10]] * 4)
    assert Q.thumbnail(np.zeros((360, 640)), 32).shape == (32, 32)


def test_frame_thumbnail_reads_luma_and_both_chroma_planes():
    y = np.zeros((64, 64))
    cb = np.zeros((32, 32))
    cr = np.zeros((32, 32))
    cr[:2, :2] = 40.0                                 # one 2 x 2 chroma cell of 16 x 16: its mean is 40
    t = Q.frame_thumbnail(y, cb, cr)
    assert t.shape == (32 * 32 + 2 * 16 * 16,) and t[: 32 * 32 + 256].max() == 0.0
    assert t[32 * 32 + 256] == 40.0 and t.sum() == 40.0
    # the same brightness, another colour: only chroma changes, and motion sees it
    assert Q.video_figures([Q.frame_thumbnail(y, cb, cb), t])["motion"] == 40.0


def test_video_figures_by_hand():
    still = [np.full((4, 4), 7.0)] * 3
    assert Q.video_figures(still) == {"motion": 0.0, "mean_motion": 0.0, "sampled_frames": 3}
    a = np.zeros((2, 2))
    b = np.array([[0.0, 0.0], [0.0, 12.0]])          # one cell moves by 12: mean change 3
    c = np.array([[1.0, 1.0], [1.0, 13.0]])          # every cell by 1
    assert Q.video_figures([a, b, c]) == {"motion": 12.0, "mean_motion": (3 + 1) / 2, "sampled_frames": 3}
    assert Q.video_figures([a]) == {"motion": 0.0, "mean_motion": 0.0, "sampled_frames": 1}


def test_flags_on_both_sides_of_every_threshold():
    th = screening.Thresholds(muted_fraction=0.9, static_motion=2.0, clipped_fraction=0.01)
    base = {"silent_fraction": 0.0, "motion": 10.0, "sampled_frames": 2, "clipped_fraction": 0.0}
    assert screening.flags(base, th) == []
    assert screening.flags({**base, "silent_fraction": 0.9}, th) == ["muted"]          # at the threshold: flagged
    assert screening.flags({**base, "silent_fraction": 0.8999}, th) == []
    assert screening.flags({**base, "motion": 1.999}, th) == ["static"]
    assert screening.flags({**base, "motion": 2.0}, th) == []                          # at the threshold: moving
    assert screening.flags({**base, "motion": 0.0, "sampled_frames": 1}, th) == []     # one frame: not judged
    assert screening.flags({**base, "clipped_fraction": 0.01}, th) == ["clipped"]
    assert screening.flags({**base, "clipped_fraction": 0.0099}, th) == []
    assert screening.flags({"silent_fraction": 1.0, "motion": 0.5, "sampled_frames": 3, "clipped_fraction": 0.5},
                           th) == ["muted", "static", "clipped"]
    assert screening.parse_exclude("static, muted") == ("muted", "static")
    with pytest.raises(ValueError, match="unknown blurry"):
        screening.parse_exclude("muted,blurry")


def _flip(h: int, bits: list[int]) -> str:
    for b in bits:
        h ^= 1 << b
    return f"{h:016x}"


def test_duplicate_clusters_by_hand():
    th = screening.Thresholds(duplicate_image_bits=4, duplicate_audio_bits=8)
    img, aud = 0x0123456789ABCDEF, 0x0F0F0F0F0F0F0F0F
    items = [("b", _flip(img, []), _flip(aud, [])),
             ("a", _flip(img, [0, 9, 20, 63]), _flip(aud, list(range(8)))),     # 4 and 8 bits from b: same cluster
             ("c", _flip(img, [0, 9, 20, 63, 33]), _flip(aud, [])),             # 5 image bits from b, 1 from a
             ("d", _flip(img, [1, 2, 3, 4, 5]), _flip(aud, [40])),              # 5 from b, 9 from a, >4 from c
             ("e", _flip(img, []), _flip(aud, list(range(9))))]                 # 9 audio bits from b, 1 from a
    # a-b (4, 8), a-c (1, 8), a-e (4, 1): one cluster through a; d is 5 or more image bits from each of them
    assert screening.duplicate_clusters(items, th) == [["a", "b", "c", "e"]]
    assert screening.duplicates_of([["a", "b", "c", "e"]]) == {"b": "a", "c": "a", "e": "a"}
    assert screening.duplicate_clusters(items, screening.Thresholds(duplicate_image_bits=3,
                                                                    duplicate_audio_bits=8)) == [["a", "c"]]
    assert screening.duplicate_clusters(items[:1], th) == []


@pytest.mark.parametrize("image_bits,audio_bits", [(0, 0), (2, 12), (4, 8), (8, 3)])
def test_duplicate_clusters_equal_all_pairs(image_bits, audio_bits):
    """The banded search finds what comparing every pair finds (clips drawn near a few originals)."""
    rng = random.Random(image_bits * 100 + audio_bits)
    th = screening.Thresholds(duplicate_image_bits=image_bits, duplicate_audio_bits=audio_bits)
    originals = [(rng.getrandbits(64), rng.getrandbits(64)) for _ in range(5)]
    items = []
    for k in range(60):
        i, a = originals[rng.randrange(5)]
        items.append((f"c{k:02d}", _flip(i, [rng.randrange(64) for _ in range(rng.randint(0, image_bits + 2))]),
                      _flip(a, [rng.randrange(64) for _ in range(rng.randint(0, audio_bits + 2))])))
    parent = {c: c for c, _, _ in items}

    def root(c):
        while parent[c] != c:
            c = parent[c]
        return c
    for (p, pi, pa), (q, qi, qa) in itertools.combinations(items, 2):
        if Q.hamming(pi, qi) <= image_bits and Q.hamming(pa, qa) <= audio_bits:
            parent[max(root(p), root(q))] = min(root(p), root(q))
    groups: dict = {}
    for c, _, _ in items:
        groups.setdefault(root(c), []).append(c)
    want = sorted((sorted(g) for g in groups.values() if len(g) > 1), key=lambda g: g[0])
    assert screening.duplicate_clusters(items, th) == want
    assert len(want) >= 2              # the case is not trivial


def test_hashes_find_near_copies_and_separate_different_clips():
    img = _image(lambda y, x, c: (x * 4 + y * 2 + c * 30) % 256)
    ramp = _image(lambda y, x, c: 255 - x * 4)                         # darker to the right
    assert Q.image_hash(ramp) == "ffffffffffffffff"                     # each pixel brighter than its right one
    assert Q.image_hash(_image(lambda y, x, c: x * 4)) == "0000000000000000"
    copy = img.resize((64, 48)).convert("RGB")
    assert Q.hamming(Q.image_hash(img), Q.image_hash(copy)) == 0
    rng = np.random.default_rng(0)
    t = np.arange(48000) / 16000
    tone = (0.3 * np.sin(2 * np.pi * 440 * t) * (1 + (t > 1.5))).astype(np.float64)
    a = np.round(tone * 32768 * 0.9).astype(np.int16)
    quieter = np.round(tone * 32768 * 0.5).astype(np.int16)              # the same sound 5 dB lower: same hash
    other = np.round(rng.normal(0, 0.1, 48000) * 32768).astype(np.int16)
    assert Q.hamming(Q.audio_hash(a), Q.audio_hash(quieter)) == 0
    assert Q.hamming(Q.audio_hash(a), Q.audio_hash(other)) > 16
    assert len(Q.audio_hash(np.zeros(100, np.int16))) == 16
