"""Synthetic scenes: the look of each class (shape, colour, texture), backgrounds, object layout and rendering.

A class is drawn as a coloured, textured shape with a saturated hue of its own; backgrounds are low-saturation
gradients and soft patterns, so colour identifies the class and the sounding object's pixels can be checked. Scenes
are planned once (object sizes, centre positions, drift) with a seeded generator, then rendered either as RGB images
(test-set frames, IS3 images, S4 frames) or as YUV 4:2:0 planes for fast H.264 encoding (`YuvCompositor`).
Objects stand still for `HOLD_S` seconds either side of the clip's centre, so the centre frame shows exactly the
planned boxes whichever frame near t = duration/2 a reader picks.
"""
from __future__ import annotations

import colorsys
from dataclasses import dataclass, field

import numpy as np

HOLD_S = 0.5  # objects are still within +-HOLD_S of the centre time

# (VGGSound label, short IS3-style name without underscores). Several labels contain commas, as real ones do.
CLASS_TABLE: list[tuple[str, str]] = [
    ("dog barking", "dog"),
    ("playing violin, fiddle", "violin"),
    ("female speech, woman speaking", "female"),
    ("helicopter", "helicopter"),
    ("cattle, bovinae cowbell", "cowbell"),
    ("church bell ringing", "churchbell"),
    ("donkey, ass braying", "donkey"),
    ("playing acoustic guitar", "acousticguitar"),
    ("fly, housefly buzzing", "fly"),
    ("ice cream truck, ice cream van", "icecreamtruck"),
    ("lions roaring", "lion"),
    ("subway, metro, underground", "subway"),
    ("cat meowing", "cat"),
    ("bird chirping, tweeting", "bird"),
    ("playing piano", "piano"),
    ("railroad car, train wagon", "train"),
    ("chainsawing trees", "chainsaw"),
    ("male speech, man speaking", "male"),
    ("lawn mowing", "lawnmower"),
    ("playing trumpet", "trumpet"),
]
# hues (degrees) ordered so that the first classes are far apart on the colour wheel
HUES = [0, 180, 60, 240, 120, 300, 30, 210, 90, 270, 150, 330]
SHAPES = ["disc", "square", "triangle", "diamond", "ring", "cross", "star", "hexagon", "ellipse", "halfdisc"]
TEXTURES = ["solid", "hstripes", "vstripes", "diagonal", "checker", "dots"]


@dataclass(frozen=True)
class ClassLook:
    """How one class looks; `rgb` is the fully lit colour (0-255)."""
    label: str
    is3_name: str
    hue: float
    rgb: tuple[int, int, int]
    shape: str
    texture: str


def class_catalogue(num_classes: int) -> list[ClassLook]:
    """The first `num_classes` classes; looks depend only on the class index, never on the seed."""
    out = []
    for k in range(num_classes):
        if k < len(CLASS_TABLE):
            label, short = CLASS_TABLE[k]
        else:
            label, short = f"synthetic sound {k}", f"synthetic{k}"
        hue = float(HUES[k % len(HUES)] + 15 * (k // len(HUES) % 2))
        r, g, b = colorsys.hsv_to_rgb(hue / 360.0, 0.85, 0.95)
        out.append(ClassLook(label, short, hue, (round(r * 255), round(g * 255), round(b * 255)),
                             SHAPES[k % len(SHAPES)], TEXTURES[(k + k // len(SHAPES)) % len(TEXTURES)]))
    return out


def s4_category(label: str) -> str:
    """AVSBench-style category folder name: the part before the first comma, spaces as underscores."""
    return label.split(",")[0].strip().replace(" ", "_")


# ----------------------------------------------------------------------------------------------------------------
# sprites


def shape_mask(shape: str, h: int, w: int) -> np.ndarray:
    """Boolean mask of `shape` filling an h x w box (2x supersampled, majority vote)."""
    yy, xx = np.mgrid[0:2 * h, 0:2 * w].astype(np.float32)
    y = (yy + 0.5) / (2 * h) * 2 - 1  # [-1, 1]
    x = (xx + 0.5) / (2 * w) * 2 - 1
    r = np.sqrt(x * x + y * y)
    if shape == "disc":
        m = r <= 1
    elif shape == "square":
        m = (np.abs(x) <= 0.92) & (np.abs(y) <= 0.92)
    elif shape == "triangle":
        m = (y >= -1) & (y <= 1) & (np.abs(x) <= (y + 1) / 2)
    elif shape == "diamond":
        m = np.abs(x) + np.abs(y) <= 1
    elif shape == "ring":
        m = (r <= 1) & (r >= 0.55)
    elif shape == "cross":
        m = (np.abs(x) <= 0.34) | (np.abs(y) <= 0.34)
    elif shape == "star":
        ang = np.arctan2(y, x)
        m = r <= 0.55 + 0.45 * np.abs(np.cos(2.5 * ang))
    elif shape == "hexagon":
        m = (np.abs(y) <= 0.87) & (np.abs(y) * 0.577 + np.abs(x) <= 1)
    elif shape == "ellipse":
        m = (x / 1.0) ** 2 + (y / 0.6) ** 2 <= 1
    elif shape == "halfdisc":
        m = (r <= 1) & (y >= -0.1)
    else:
        raise ValueError(f"unknown shape {shape!r}")
    return m.reshape(h, 2, w, 2).mean(axis=(1, 3)) >= 0.5


def texture_gain(texture: str, h: int, w: int, period: float, phase: float) -> np.ndarray:
    """Brightness factor in [0.62, 1] (keeps the hue, so colour still identifies the class)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if texture == "solid":
        return np.ones((h, w), np.float32)
    if texture == "hstripes":
        on = np.floor(yy / period + phase) % 2 == 0
    elif texture == "vstripes":
        on = np.floor(xx / period + phase) % 2 == 0
    elif texture == "diagonal":
        on = np.floor((xx + yy) / period + phase) % 2 == 0
    elif texture == "checker":
        on = (np.floor(xx / period + phase) + np.floor(yy / period + phase)) % 2 == 0
    elif texture == "dots":
        cx = (xx / period + phase) % 1 - 0.5
        cy = (yy / period + phase) % 1 - 0.5
        on = cx * cx + cy * cy > 0.09
    else:
        raise ValueError(f"unknown texture {texture!r}")
    return np.where(on, 1.0, 0.62).astype(np.float32)


def render_sprite(look: ClassLook, h: int, w: int, period: float, phase: float) -> tuple[np.ndarray, np.ndarray]:
    """(rgb uint8 [h, w, 3], mask bool [h, w]) of one object."""
    mask = shape_mask(look.shape, h, w)
    gain = texture_gain(look.texture, h, w, period, phase)
    rgb = np.clip(np.asarray(look.rgb, np.float32)[None, None, :] * gain[..., None], 0, 255).astype(np.uint8)
    return rgb, mask


# ----------------------------------------------------------------------------------------------------------------
# scenes


@dataclass
class SceneObject:
    """One object: its class, sprite size and texture, centre-time top-left position and drift (pixels, px/s)."""
    cls: int
    sounding: bool
    h: int
    w: int
    x: int
    y: int
    vx: float
    vy: float
    period: float
    phase: float


@dataclass
class Background:
    """Low-saturation gradient between two colours plus a soft sinusoidal pattern."""
    c0: tuple[float, float, float]
    c1: tuple[float, float, float]
    angle: float
    freq: tuple[float, float]
    pattern_phase: float
    pattern_amp: float


@dataclass
class Scene:
    width: int
    height: int
    background: Background
    objects: list[SceneObject] = field(default_factory=list)


def random_background(rng: np.random.Generator) -> Background:
    def colour() -> tuple[float, float, float]:
        return colorsys.hsv_to_rgb(rng.uniform(0, 1), rng.uniform(0.0, 0.22), rng.uniform(0.22, 0.85))
    return Background(colour(), colour(), float(rng.uniform(0, np.pi)),
                      (float(rng.uniform(1, 5)), float(rng.uniform(1, 5))), float(rng.uniform(0, 2 * np.pi)),
                      float(rng.uniform(0.03, 0.10)))


def render_background(bg: Background, width: int, height: int) -> np.ndarray:
    """float32 RGB in [0, 1], [height, width, 3]."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    u = xx / max(width - 1, 1)
    v = yy / max(height - 1, 1)
    g = (np.cos(bg.angle) * u + np.sin(bg.angle) * v)
    g = (g - g.min()) / max(float(g.max() - g.min()), 1e-6)
    img = (1 - g)[..., None] * np.asarray(bg.c0, np.float32) + g[..., None] * np.asarray(bg.c1, np.float32)
    pattern = np.sin(2 * np.pi * bg.freq[0] * u + bg.pattern_phase) * np.cos(2 * np.pi * bg.freq[1] * v)
    img = img + bg.pattern_amp * pattern[..., None]
    return np.clip(img, 0, 1).astype(np.float32)


def _overlaps(a: tuple[int, int, int, int], b: tuple[int, int, int, int], margin: int) -> bool:
    return not (a[2] + margin <= b[0] or b[2] + margin <= a[0] or a[3] + margin <= b[1] or b[3] + margin <= a[1])


def plan_scene(rng: np.random.Generator, width: int, height: int, classes: list[int], sounding: list[bool],
               size_range: tuple[float, float] = (0.22, 0.42), drift: float = 0.03) -> Scene:
    """Place one object per entry of `classes` without overlap at the centre time.

    Sizes are fractions of the short side; `drift` is the largest speed as a fraction of the short side per second.
    Positions are even (YUV 4:2:0 chroma alignment). If a layout does not fit after many tries, objects shrink.
    """
    short = min(width, height)
    scale = 1.0
    for attempt in range(400):
        if attempt and attempt % 50 == 0:
            scale *= 0.85
        objs: list[SceneObject] = []
        boxes: list[tuple[int, int, int, int]] = []
        ok = True
        for cls, snd in zip(classes, sounding):
            side = rng.uniform(*size_range) * short * scale
            aspect = rng.uniform(0.8, 1.25)
            h = max(8, int(side / np.sqrt(aspect)) // 2 * 2)
            w = max(8, int(side * np.sqrt(aspect)) // 2 * 2)
            h, w = min(h, height - 4), min(w, width - 4)
            x = int(rng.integers(0, width - w + 1)) // 2 * 2
            y = int(rng.integers(0, height - h + 1)) // 2 * 2
            box = (x, y, x + w, y + h)
            if any(_overlaps(box, b, 4) for b in boxes):
                ok = False
                break
            speed = rng.uniform(0, drift) * short
            ang = rng.uniform(0, 2 * np.pi)
            objs.append(SceneObject(cls, snd, h, w, x, y, float(speed * np.cos(ang)), float(speed * np.sin(ang)),
                                    float(rng.uniform(0.12, 0.22) * min(h, w)), float(rng.uniform(0, 1))))
            boxes.append(box)
        if ok:
            return Scene(width, height, random_background(rng), objs)
    raise RuntimeError(f"cannot place {len(classes)} objects in a {width}x{height} frame")


def object_offset(obj: SceneObject, t: float, centre: float, width: int, height: int) -> tuple[int, int]:
    """Top-left position (even pixels, inside the frame) of `obj` at time t."""
    dt = t - centre
    s = np.sign(dt) * max(abs(dt) - HOLD_S, 0.0)
    x = int(round((obj.x + obj.vx * s) / 2)) * 2
    y = int(round((obj.y + obj.vy * s) / 2)) * 2
    x = min(max(x, 0), (width - obj.w) // 2 * 2)
    y = min(max(y, 0), (height - obj.h) // 2 * 2)
    return x, y


def tight_box(mask: np.ndarray, x: int, y: int) -> tuple[int, int, int, int]:
    """Pixel box (x1, y1, x2, y2), exclusive ends, of the True pixels of a sprite mask placed at (x, y)."""
    ys = np.flatnonzero(mask.any(axis=1))
    xs = np.flatnonzero(mask.any(axis=0))
    return x + int(xs[0]), y + int(ys[0]), x + int(xs[-1]) + 1, y + int(ys[-1]) + 1


def centre_boxes(scene: Scene, looks: list[ClassLook]) -> list[tuple[int, int, int, int]]:
    """Tight pixel boxes of every object at the centre time (objects sit at their planned position then)."""
    return [tight_box(shape_mask(looks[o.cls].shape, o.h, o.w), o.x, o.y) for o in scene.objects]


def render_rgb(scene: Scene, looks: list[ClassLook], t: float | None = None, centre: float = 0.0) -> np.ndarray:
    """uint8 RGB image of the scene at time t (None: the centre time), silent objects drawn first."""
    img = (render_background(scene.background, scene.width, scene.height) * 255 + 0.5).astype(np.uint8)
    order = sorted(range(len(scene.objects)), key=lambda i: scene.objects[i].sounding)
    for i in order:
        o = scene.objects[i]
        x, y = (o.x, o.y) if t is None else object_offset(o, t, centre, scene.width, scene.height)
        rgb, mask = render_sprite(looks[o.cls], o.h, o.w, o.period, o.phase)
        region = img[y:y + o.h, x:x + o.w]
        region[mask] = rgb[mask]
    return img


def object_mask(scene: Scene, looks: list[ClassLook], index: int, t: float | None = None,
                centre: float = 0.0) -> np.ndarray:
    """Boolean [height, width] mask of the visible pixels of object `index` at time t (None: the centre time)."""
    full = np.full((scene.height, scene.width), -1, np.int32)
    order = sorted(range(len(scene.objects)), key=lambda i: scene.objects[i].sounding)
    for i in order:
        o = scene.objects[i]
        x, y = (o.x, o.y) if t is None else object_offset(o, t, centre, scene.width, scene.height)
        m = shape_mask(looks[o.cls].shape, o.h, o.w)
        full[y:y + o.h, x:x + o.w][m] = i
    return full == index


# ----------------------------------------------------------------------------------------------------------------
# YUV 4:2:0 (BT.601 limited range, what decoders assume for untagged H.264)


def rgb_to_yuv(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """float RGB in [0, 1] [h, w, 3] -> float Y, Cb, Cr planes (full resolution)."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    y = 16 + 65.481 * r + 128.553 * g + 24.966 * b
    cb = 128 - 37.797 * r - 74.203 * g + 112.0 * b
    cr = 128 + 112.0 * r - 93.786 * g - 18.214 * b
    return y, cb, cr


def _half(p: np.ndarray) -> np.ndarray:
    h, w = p.shape
    return p.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))


def _u8(p: np.ndarray) -> np.ndarray:
    return np.clip(p + 0.5, 0, 255).astype(np.uint8)


class YuvCompositor:
    """Pre-converts a scene's background and sprites to YUV 4:2:0 and composites frames as yuv420p arrays."""

    def __init__(self, scene: Scene, looks: list[ClassLook], centre: float):
        self.scene, self.centre = scene, centre
        y, cb, cr = rgb_to_yuv(render_background(scene.background, scene.width, scene.height))
        self.bg = (_u8(y), _u8(_half(cb)), _u8(_half(cr)))
        self.sprites = []
        order = sorted(range(len(scene.objects)), key=lambda i: scene.objects[i].sounding)
        for i in order:
            o = scene.objects[i]
            rgb, mask = render_sprite(looks[o.cls], o.h, o.w, o.period, o.phase)
            sy, scb, scr = rgb_to_yuv(rgb.astype(np.float32) / 255.0)
            cmask = _half(mask.astype(np.float32)) >= 0.5
            self.sprites.append((o, _u8(sy), mask, _u8(_half(scb)), _u8(_half(scr)), cmask))

    def frame(self, t: float) -> np.ndarray:
        """yuv420p frame as PyAV wants it: uint8 [height * 3 // 2, width]."""
        w, h = self.scene.width, self.scene.height
        yp, up, vp = (p.copy() for p in self.bg)
        for o, sy, m, su, sv, cm in self.sprites:
            x, y = object_offset(o, t, self.centre, w, h)
            np.copyto(yp[y:y + o.h, x:x + o.w], sy, where=m)
            cx, cy = x // 2, y // 2
            np.copyto(up[cy:cy + o.h // 2, cx:cx + o.w // 2], su, where=cm)
            np.copyto(vp[cy:cy + o.h // 2, cx:cx + o.w // 2], sv, where=cm)
        return np.concatenate([yp.ravel(), up.ravel(), vp.ravel()]).reshape(h * 3 // 2, w)
