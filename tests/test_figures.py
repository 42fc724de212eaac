"""pipeline.shard.quality (work in progress, issue 17): the figures against hand-computed values."""
from __future__ import annotations

import math

import numpy as np
from PIL import Image

from pipeline.shard import quality as Q


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
    src = np.array([[1.0, -1.0, 0.2, 0.1], [0.3, 0.2, 0.1, 0.0]])            # 2 of 8 samples at full scale
    f = Q.audio_figures(np.zeros(1600, np.int16), src)
    assert f["clipped_fraction"] == 0.25 and f["channels"] == "distinct"
    same = np.tile(np.array([0.1, -0.2, 0.3]), (2, 1))
    assert Q.channel_relation(same) == "identical"
    assert Q.channel_relation(np.stack([same[0], np.zeros(3)])) == "one_silent"
    assert Q.channel_relation(np.stack([np.zeros(3), np.zeros(3)])) == "identical"
    assert Q.channel_relation(np.zeros((1, 3))) == "mono"


def _image(value_fn, size=(64, 48)):
    w, h = size
    a = np.fromfunction(value_fn, (h, w, 3)).clip(0, 255).astype(np.uint8)
    return Image.fromarray(a)


def test_video_figures_still_and_moving():
    still = [_image(lambda y, x, c: x * 3)] * 4
    assert Q.video_figures([Q.thumbnail(f) for f in still]) == {"stillness": 0.0, "distinct_frames": 1, "sampled_frames": 4}
    # uniform grey frames 0, 10, 20: each step differs by 10 everywhere
    steps = [Image.new("RGB", (64, 48), (v, v, v)) for v in (0, 10, 20)]
    assert Q.video_figures([Q.thumbnail(f) for f in steps]) == {"stillness": 10.0, "distinct_frames": 3, "sampled_frames": 3}
    # a return to the first frame is not a new distinct frame; a 1-level change is "the same" (below 2.0)
    back = [Image.new("RGB", (8, 8), (v, v, v)) for v in (0, 50, 0, 1)]
    assert Q.video_figures([Q.thumbnail(f) for f in back])["distinct_frames"] == 2
    assert Q.video_figures([Q.thumbnail(f) for f in back])["stillness"] == round((50 + 50 + 1) / 3, 3)


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
