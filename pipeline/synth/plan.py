"""Plan a synthetic corpus from its settings: clip ids, splits, formats, scenes, sounds and the test sets.

Everything random is drawn here, in one process, from generators seeded by (seed, stream, index), so a plan depends
only on the settings; rendering (pipeline.synth.jobs) then needs nothing but a clip's spec.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pipeline.synth import scenes
from pipeline.synth.scenes import ClassLook, Scene
from pipeline.synth.sounds import Voice, draw_voice

ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
# (width, height): landscape 16:9 and 4:3, small, and portrait, as real uploads vary
RESOLUTIONS = [(640, 360), (480, 360), (320, 240), (360, 640), (640, 480), (426, 240)]
FRAME_RATES = [24, 25, 30]
SAMPLE_RATES = [16000, 44100, 48000]
CHANNELS = [1, 2]
IS3_SIZE = 224
S4_SIZE = 224
S4_SECONDS = 5.0
S4_FRAMES = 5
# VGG-SS's corrupt boxes: the real file holds zero-width boxes and ones whose coordinates are this sentinel
SENTINEL = -2.8823037615171174e16
# offsets of the generators' streams (one stream per kind of item)
STREAM_CORPUS, STREAM_CLIP, STREAM_IS3, STREAM_S4, STREAM_CLEAN, STREAM_DEFECTS = 0, 1, 2, 3, 4, 5
# the flaws of real VGGSound clips the corpus can plant (`defects` training clips of each): digital or near-digital
# silence, a still image for the whole clip, hard-clipped audio, and a re-encoded copy of another clip under another id
DEFECTS = ("muted", "static", "clipped", "duplicate")


@dataclass
class ClipSpec:
    """One mp4 clip (and, for test clips, its VGG-SS frame and wav)."""
    id: str
    ytid: str
    start: int
    cls: int
    split: str
    offscreen: bool
    width: int
    height: int
    fps: int
    sample_rate: int
    channels: int
    seconds: float
    seed: int
    scene: Scene
    voice: Voice
    extra_boxes: list[list[float]] = field(default_factory=list)  # degenerate boxes added to vggss.json only
    defect: str | None = None              # one of DEFECTS when this clip was planted as such
    duplicate_of: str | None = None        # a duplicate's original (its content, re-encoded)


@dataclass
class Is3Spec:
    """One IS3 image (two objects of different classes) and its two samples, one per target class."""
    image_id: str
    classes: tuple[int, int]
    stems: tuple[str, str]
    scene: Scene
    voices: tuple[Voice, Voice]
    interferers: tuple[Voice | None, Voice | None]
    seed: int


@dataclass
class S4Spec:
    """One AVSBench-S4-style test video: 5 frames at 224x224, one sounding object, 5 s of audio."""
    name: str
    cls: int
    category: str
    scene: Scene
    voice: Voice
    seed: int


@dataclass
class CleanSpec:
    """Clean (noise-free) recordings of one class, the audio pool IS3+ draws from."""
    cls: int
    voices: list[Voice]


@dataclass
class Plan:
    looks: list[ClassLook]
    clips: list[ClipSpec]
    is3: list[Is3Spec]
    s4: list[S4Spec]
    clean: list[CleanSpec]


def rng_for(seed: int, stream: int, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, stream, index])


def _ytid(rng: np.random.Generator, used: set[str], dash: bool) -> str:
    while True:
        chars = [ID_ALPHABET[i] for i in rng.integers(0, len(ID_ALPHABET), 11)]
        if dash:
            chars[0] = "-"
        elif chars[0] == "-":
            continue
        ytid = "".join(chars)
        if ytid not in used:
            used.add(ytid)
            return ytid


def _cycle(rng: np.random.Generator, n: int, options: list) -> list:
    """n values cycling through `options` in a shuffled order, so small corpora still contain every option."""
    reps = -(-n // len(options))
    out: list = []
    for _ in range(reps):
        out.extend(options[i] for i in rng.permutation(len(options)))
    return out[:n]


def _others(rng: np.random.Generator, num_classes: int, exclude: set[int], count: int) -> list[int]:
    pool = [c for c in range(num_classes) if c not in exclude]
    count = min(count, len(pool))
    return [int(c) for c in rng.choice(pool, size=count, replace=False)] if count else []


def _clip_scene(rng: np.random.Generator, spec_cls: int, width: int, height: int, num_classes: int,
                offscreen: bool, test: bool) -> Scene:
    if offscreen:
        visible = _others(rng, num_classes, {spec_cls}, int(rng.integers(1, 4)))
        return scenes.plan_scene(rng, width, height, visible, [False] * len(visible))
    twins = test and rng.uniform() < 0.2  # VGG-SS sometimes has several boxes: two instances of the class
    sounding = [spec_cls, spec_cls] if twins else [spec_cls]
    distractors = _others(rng, num_classes, {spec_cls}, int(rng.integers(0, 2) if twins else rng.integers(1, 3)))
    classes = distractors + sounding
    size = (0.16, 0.32) if len(classes) >= 3 else (0.2, 0.4)
    return scenes.plan_scene(rng, width, height, classes, [c == spec_cls for c in classes], size_range=size)


def plan_corpus(num_clips: int, seconds: float, num_classes: int, seed: int, test_fraction: float,
                offscreen_fraction: float, is3_images: int, s4_videos: int, clean_per_class: int,
                defects: int = 0) -> Plan:
    looks = scenes.class_catalogue(num_classes)
    rng = rng_for(seed, STREAM_CORPUS, 0)
    # at least one test clip when asked for any, and always at least one training clip
    n_test = min(num_clips - 1, max(1, round(num_clips * test_fraction))) if test_fraction > 0 else 0
    test_idx = set(int(i) for i in rng.choice(num_clips, size=n_test, replace=False))
    classes = _cycle(rng, num_clips, list(range(num_classes)))
    res = _cycle(rng, num_clips, RESOLUTIONS)
    fps = _cycle(rng, num_clips, FRAME_RATES)
    srs = _cycle(rng, num_clips, SAMPLE_RATES)
    chans = _cycle(rng, num_clips, CHANNELS)
    used: set[str] = set()
    clips: list[ClipSpec] = []
    last_ytid: dict[str, tuple[str, int]] = {}
    for i in range(num_clips):
        split = "test" if i in test_idx else "train"
        crng = rng_for(seed, STREAM_CLIP, i)
        prev = last_ytid.get(split)
        if prev is not None and crng.uniform() < 0.04:  # a second clip from the same video, as VGGSound has
            ytid, start = prev[0], prev[1] + int(crng.integers(10, 60))
        else:
            ytid, start = _ytid(crng, used, dash=crng.uniform() < 0.12), int(crng.integers(0, 600))
        last_ytid[split] = (ytid, start)
        offscreen = split == "train" and crng.uniform() < offscreen_fraction
        w, h = res[i]
        scene = _clip_scene(crng, classes[i], w, h, num_classes, offscreen, split == "test")
        clips.append(ClipSpec(f"{ytid}_{start:06d}", ytid, start, classes[i], split, offscreen, w, h, fps[i], srs[i],
                              chans[i], seconds, int(crng.integers(0, 2**31)), scene,
                              draw_voice(crng, classes[i])))
    tests = [c for c in clips if c.split == "test"]
    if tests:
        tests[0].extra_boxes.append([0.00625, 0.015625, 0.00625, 0.015625])  # zero width and height
    if len(tests) > 1:
        tests[1].extra_boxes.append([SENTINEL] * 4)
    plant_defects(clips, seed, defects)
    clean = [CleanSpec(k, [draw_voice(rng_for(seed, STREAM_CLEAN, k * 1000 + j), k) for j in range(clean_per_class)])
             for k in range(num_classes)]
    return Plan(looks, clips, _plan_is3(seed, looks, is3_images), _plan_s4(seed, looks, s4_videos, used), clean)


def plant_defects(clips: list[ClipSpec], seed: int, count: int) -> None:
    """Mark `count` training clips as each of DEFECTS (distinct clips; a duplicate takes its original's class,
    scene, sound, formats and seed, and keeps its own id). Test clips stay clean: their boxes are test annotations."""
    if count <= 0:
        return
    train = [c for c in clips if c.split == "train" and not c.offscreen]
    need = count * (len(DEFECTS) + 1)                 # + one original per duplicate
    if len(train) < need:
        raise ValueError(f"{count} defects of each kind need {need} on-screen training clips, the corpus has "
                         f"{len(train)}")
    rng = rng_for(seed, STREAM_DEFECTS, 0)
    picked = [train[int(i)] for i in rng.choice(len(train), size=need, replace=False)]
    for k, kind in enumerate(DEFECTS):
        for c in picked[k * count:(k + 1) * count]:
            c.defect = kind
    for copy, original in zip(picked[3 * count:4 * count], picked[4 * count:]):
        copy.duplicate_of = original.id
        for name in ("cls", "width", "height", "fps", "sample_rate", "channels", "seconds", "seed", "scene", "voice"):
            setattr(copy, name, getattr(original, name))


def _plan_is3(seed: int, looks: list[ClassLook], count: int) -> list[Is3Spec]:
    out = []
    used: set[int] = set()
    k = len(looks)
    for j in range(count):
        rng = rng_for(seed, STREAM_IS3, j)
        a, b = (int(c) for c in rng.choice(k, size=2, replace=False))
        num = int(rng.integers(1, 12000))
        while num in used:
            num = int(rng.integers(1, 12000))
        used.add(num)
        image_id = f"{looks[a].is3_name}_{looks[b].is3_name}_{num}"
        scene = scenes.plan_scene(rng, IS3_SIZE, IS3_SIZE, [a, b], [True, True], size_range=(0.3, 0.48), drift=0.0)
        interferers = tuple(draw_voice(rng, o[0]) if o else None for o in
                            (_others(rng, k, {a, b}, 1), _others(rng, k, {a, b}, 1)))
        out.append(Is3Spec(image_id, (a, b), (f"{image_id}_{looks[a].is3_name}", f"{image_id}_{looks[b].is3_name}"),
                           scene, (draw_voice(rng, a), draw_voice(rng, b)), interferers, int(rng.integers(0, 2**31))))
    return out


def _plan_s4(seed: int, looks: list[ClassLook], count: int, used: set[str]) -> list[S4Spec]:
    out = []
    k = len(looks)
    for j in range(count):
        rng = rng_for(seed, STREAM_S4, j)
        cls = j % k
        distractors = _others(rng, k, {cls}, int(rng.integers(0, 2)))
        classes = distractors + [cls]
        scene = scenes.plan_scene(rng, S4_SIZE, S4_SIZE, classes, [c == cls for c in classes],
                                  size_range=(0.25, 0.45), drift=0.05)
        out.append(S4Spec(_ytid(rng, used, dash=rng.uniform() < 0.12), cls, scenes.s4_category(looks[cls].label),
                          scene, draw_voice(rng, cls), int(rng.integers(0, 2**31))))
    return out


def s4_frame_time(k: int) -> float:
    """Time of AVSBench frame k (1..5): the last of 16 samples in second k."""
    return k - 1 + 15 / 16


def normalized_box(box: tuple[int, int, int, int], width: int, height: int) -> list[float]:
    return [round(box[0] / width, 6), round(box[1] / height, 6), round(box[2] / width, 6), round(box[3] / height, 6)]
