"""Build IS3+ (the paper's section 3.2): IS3 images and masks paired with clean audio of the simplified class.

`python -m eval.is3plus --is3 IS3_DIR --clean-audio CLEAN_DIR [--mapping FILE] --out OUT_DIR [--seed 0]`
- IS3_DIR: an IS3 folder as `eval.testsets` reads it (IS3_annotation.json, images/, audio_wav/, gt_masks/).
- CLEAN_DIR: `{class}/*.wav|flac`, a pool of clean clips per class, the folder named by the IS3+ class or, when no
  such folder exists, by the IS3 class it comes from.
- mapping (default CLEAN_DIR/class_mapping.json): {"IS3 class": "IS3+ class"}, the category simplification (e.g.
  "playing harpsichord" -> "harp", "cat growling" -> "cat"); classes it does not name keep their name.
Every annotation gets its class mapped, then one clip drawn uniformly from the sorted files of that class with a
`random.Random` seeded by (seed, sample key), so a sample's draw depends only on the seed and its own key. Each chosen
clip is downmixed to mono, resampled to 16 kHz and peak-normalised ("we normalize and downsample audio samples to
16kHz"; the peak level is an option), written once to OUT_DIR/audio_wav/{folder}/{file}.wav.
OUT_DIR/IS3plus_annotation.json lists IS3's records with paths relative to OUT_DIR (images and masks stay in IS3_DIR),
`class` (IS3+), `is3_class` and `source_audio`; it is written last and atomically, with config.yaml beside it.
"""
from __future__ import annotations

import dataclasses
import json
import os
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF
from tqdm import tqdm

from eval.errors import EvalError
from eval.inputs import read_audio
from eval.testsets import IS3PLUS_ANNOTATION, read_testset
from pipeline.common.atomic import atomic_open, atomic_write_json
from pipeline.common.cli import Parser, run_cli
from pipeline.common.config import load_config, save_config
from pipeline.common.outputs import replacing


@dataclass
class IS3PlusConfig:
    is3: str = ""               # IS3 folder
    clean_audio: str = ""       # {class}/*.wav pool of clean clips
    mapping: str = ""           # IS3 -> IS3+ class mapping json; empty: CLEAN_DIR/class_mapping.json
    out: str = ""               # IS3+ folder to write
    seed: int = 0
    sample_rate: int = 16000
    peak: float = 0.9           # peak level after normalisation (absolute sample value, full scale 1.0)
    extensions: list[str] = field(default_factory=lambda: [".wav", ".flac"])


def _load_mapping(path: Path) -> dict[str, str]:
    if not path.is_file():
        raise EvalError(f"{path}: class mapping not found")
    try:
        mapping = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EvalError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(mapping, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in mapping.items()):
        raise EvalError(f"{path}: expected a JSON object {{\"IS3 class\": \"IS3+ class\"}}")
    return mapping


def clean_audio_file(src: Path, sample_rate: int, peak: float) -> np.ndarray:
    """A clean clip as float32 mono at `sample_rate`, peak-normalised to `peak`."""
    wave, sr = read_audio(src)
    mono = torch.from_numpy(wave.mean(axis=1))
    if sr != sample_rate:
        mono = AF.resample(mono, sr, sample_rate)
    top = float(mono.abs().max())
    if top > 0:
        mono = mono * (peak / top)
    return mono.numpy().astype(np.float32)


def build(cfg: IS3PlusConfig) -> Path:
    if not cfg.is3 or not cfg.clean_audio or not cfg.out:
        raise EvalError("--is3, --clean-audio and --out are required")
    if not 0.0 < cfg.peak <= 1.0:
        raise EvalError(f"peak must be in (0, 1], got {cfg.peak}")
    is3 = read_testset("is3", cfg.is3, gt="mask")
    clean, out = Path(cfg.clean_audio), Path(cfg.out)
    mapping = _load_mapping(Path(cfg.mapping) if cfg.mapping else clean / "class_mapping.json")
    pools: dict[str, list[Path]] = {}
    choices = []
    for s in is3.samples:
        cls = mapping.get(s.label, s.label)
        if cls not in pools:
            folder = clean / cls if (clean / cls).is_dir() else clean / s.label
            pools[cls] = sorted(p for p in folder.glob("*") if p.suffix.lower() in cfg.extensions) \
                if folder.is_dir() else []
            if not pools[cls]:
                raise EvalError(f"{clean / cls}: no clean audio for IS3+ class {cls!r} (IS3 class {s.label!r})")
        choices.append((s, cls, random.Random(f"{cfg.seed}:{s.key}").choice(pools[cls])))
    with replacing(out, ("audio_wav", "config.yaml", IS3PLUS_ANNOTATION)) as stage:
        _write(stage, out, cfg, clean, choices)
    return out / IS3PLUS_ANNOTATION


def _write(stage: Path, out: Path, cfg: IS3PlusConfig, clean: Path, choices: list) -> None:
    """The IS3+ files into `stage`, paths in the annotation relative to `out`, where they will be."""
    records, written = [], {}
    for s, cls, src in tqdm(choices, desc="IS3+ audio", unit="sample"):
        rel = Path("audio_wav") / src.parent.name / f"{src.stem}.wav"
        if rel not in written:
            wave = clean_audio_file(src, cfg.sample_rate, cfg.peak)
            with atomic_open(stage / rel, "wb") as fh:
                sf.write(fh, wave, cfg.sample_rate, format="WAV", subtype="PCM_16")
            written[rel] = src
        records.append({
            "image": os.path.relpath(s.image, out), "gt_mask": os.path.relpath(s.mask, out), "audio": rel.as_posix(),
            "gt_box": list(s.boxes[0]), "class": cls, "is3_class": s.label,
            "source_audio": src.relative_to(clean).as_posix(),
        })
    save_config(cfg, stage / "config.yaml")
    atomic_write_json(stage / IS3PLUS_ANNOTATION, records)


def main(argv: list[str] | None = None) -> int:
    ap = Parser(prog="python -m eval.is3plus",
                description=__doc__.split("\n\n")[0].replace("\n", " "))
    ap.add_argument("--config", help="YAML file of IS3PlusConfig options")
    ap.add_argument("--is3")
    ap.add_argument("--clean-audio")
    ap.add_argument("--mapping")
    ap.add_argument("--out")
    ap.add_argument("--seed", type=int)
    ap.add_argument("overrides", nargs="*", help="key=value options of IS3PlusConfig")
    args = ap.parse_intermixed_args(argv)
    flags = {"is3": args.is3, "clean_audio": args.clean_audio, "mapping": args.mapping, "out": args.out,
             "seed": args.seed}
    cfg = load_config(IS3PlusConfig, args.config, args.overrides)
    path = build(dataclasses.replace(cfg, **{k: v for k, v in flags.items() if v is not None}))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
