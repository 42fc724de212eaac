"""Tiny hand-made test sets in the official layouts (VGG-SS, IS3, S4) and clean IS3+ audio, for the evaluator tests.

Formats as the public metadata has them: LVS's `vggss.json`, SSL-Align's IS3 records (foreign absolute paths of which
only the file name counts), AVSBench's `s4_meta_data.csv` and `{split}/{category}/{video}/{video}_{k}.png` folders.
Images are a few pixels, audio a fraction of a second, so building one takes milliseconds.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soundfile as sf
from PIL import Image

SR = 16000

# Boxes as in the real vggss.json: a plain one, a two-box union, a clip with a corrupt sentinel and a zero-width box,
# and a clip (like M1P1xla8rg0_000000) whose only box is degenerate, so its ground truth is empty.
VGGSS_RECORDS = [
    {"file": "-aaaaaaaaaa_000010", "class": "dog barking", "bbox": [[0.25, 0.25, 0.75, 0.75]]},
    {"file": "bbbbbbbbbbb_000030", "class": "cat meowing",
     "bbox": [[0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0]]},
    {"file": "ccccccccccc_000000", "class": "dog barking",
     "bbox": [[-2.88e16, 0.1, 0.5, 1.2], [0.00625, 0.015625, 0.00625, 0.015625]]},
    {"file": "ddddddddddd_000040", "class": "playing tambourine", "bbox": [[0.26875, 1.0, 0.753125, 1.0]]},
    {"file": "eeeeeeeeeee_000050", "class": "cat meowing", "bbox": [[0.1, 0.2, 0.3, 0.4]]},
]

IS3_STEMS = [  # two targets per image; the last one does not follow {clsA}_{clsB}_{id} (as in the real file)
    ("cat_dog_1_cat", (10, 20, 100, 120)), ("cat_dog_1_dog", (120, 30, 224, 200)),
    ("bird_car_2_bird", (0, 0, 50, 50)), ("bird_car_2_car", (60, 60, 224, 224)),
    ("dog_horn_3_dog", (5, 5, 80, 90)), ("dog_horn_3_horn", (100, 100, 200, 210)),
    ("fox_train_subway", (0, 10, 224, 165)), ("fox_train_fox", (9, 78, 139, 185)),
]

S4_VIDEOS = [("vid_A-0001", "helicopter", "test"), ("vid_B-0002", "dog_barking", "test"),
             ("vid_C-0003", "helicopter", "test"), ("vid_D-0004", "lawn_mowing", "test"),
             ("vid_E-0005", "dog_barking", "train")]


def write_wav(path: Path, seconds: float = 0.3, freq: float = 440.0, sr: int = SR, channels: int = 1) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * sr)) / sr
    wave = 0.3 * np.sin(2 * np.pi * freq * t).astype(np.float32)
    sf.write(path, np.stack([wave] * channels, 1) if channels > 1 else wave, sr, subtype="PCM_16")


def write_image(path: Path, size=(40, 30), seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(rgb).save(path)


def write_mask(path: Path, box, size: int = 224) -> None:
    """A grey-level mask with 255 inside `box`, 200 on a 1-pixel ring around it (above 127) and 60 on the next."""
    path.parent.mkdir(parents=True, exist_ok=True)
    m = np.zeros((size, size), np.uint8)
    x1, y1, x2, y2 = box
    m[max(y1 - 2, 0):y2 + 2, max(x1 - 2, 0):x2 + 2] = 60
    m[max(y1 - 1, 0):y2 + 1, max(x1 - 1, 0):x2 + 1] = 200
    m[y1:y2, x1:x2] = 255
    Image.fromarray(m).save(path)


def make_vggss(root: Path, records=VGGSS_RECORDS) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "vggss.json").write_text(json.dumps(records))
    for i, rec in enumerate(records):
        write_image(root / "frames" / f"{rec['file']}.jpg", seed=i)
        write_wav(root / "audio" / f"{rec['file']}.wav", freq=200 + 100 * i)
    return root


def make_is3(root: Path, stems=IS3_STEMS, mask_ext: str = ".jpg") -> Path:
    records = []
    for i, (stem, box) in enumerate(stems):
        records.append({"image": f"/mnt/elsewhere/synthetic3241/visual_frames/{stem}.jpg",
                        "audio": f"/mnt/elsewhere/synthetic3241/audio_wav/{stem}.wav",
                        "gt_box": [float(v) for v in box]})
        write_image(root / "images" / f"{stem}.jpg", size=(224, 224), seed=i)
        write_wav(root / "audio_wav" / f"{stem}.wav", freq=300 + 50 * i)
        write_mask(root / "gt_masks" / f"{stem}{mask_ext}", box)
    (root / "IS3_annotation.json").write_text(json.dumps(records))
    return root


def make_s4(root: Path, videos=S4_VIDEOS, nested: bool = True) -> Path:
    base = root / "s4_data" if nested else root
    root.mkdir(parents=True, exist_ok=True)
    lines = ["name,start_time,category,split"]
    for i, (video, cat, split) in enumerate(videos):
        lines.append(f"{video},0,{cat},{split}")
        write_wav(base / "audio_wav" / split / cat / f"{video}.wav", seconds=0.5, freq=250 + 40 * i)
        for k in range(1, 6):
            write_image(base / "visual_frames" / split / cat / video / f"{video}_{k}.png", size=(224, 224), seed=k)
            write_mask(base / "gt_masks" / split / cat / video / f"{video}_{k}.png", (20 * k, 20, 20 * k + 60, 120))
    (root / "s4_meta_data.csv").write_text("\n".join(lines) + "\n")
    return root


def make_clean_audio(root: Path, classes, per_class: int = 2, sr: int = 22050) -> Path:
    """`{class}/*.wav` clean clips (stereo, 22.05 kHz: the builder must resample and downmix)."""
    for c, cls in enumerate(classes):
        for k in range(per_class):
            write_wav(root / cls / f"clean_{k}.wav", seconds=0.4, freq=500 + 30 * c + 7 * k, sr=sr, channels=2)
    return root
