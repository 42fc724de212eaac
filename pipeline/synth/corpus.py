"""The synthetic VGGSound-like corpus behind `python -m pipeline.synth`: `SynthConfig` and `generate(cfg)`.

Writes, in the layout of docs/ARCHITECTURE.md section 1: `video/{ytid}_{start:06d}.mp4` (H.264 + AAC, varied resolution,
fps, sample rate and channels), `vggsound.csv` (no header: ytid,start,label,split), `testsets/` (VGG-SS, IS3, IS3 clean
audio, AVSBench S4, in the public formats) and `synth.json` (settings, the classes' looks and sounds, and per clip the
ground-truth boxes at the centre frame, whether its picture changes at all (`moving`), and, with `defects`, which flaw
was planted (`defect`, `duplicate_of`)). Each class is a coloured textured shape with its own sound; scenes add silent
distractors of other classes, and some training clips are offscreen (the sound's class is not in view). Output depends
only on the settings (not on `--workers`). Re-running with the same settings resumes and skips finished files; a
non-empty `--out` made with other settings (or not a synthetic corpus) is refused.
"""
from __future__ import annotations

import csv
import io
import json
import multiprocessing
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from pipeline.common.atomic import atomic_write_json, atomic_write_text
from pipeline.common.cli import UserError
from pipeline.common.config import save_config, to_dict
from pipeline.common.outputs import writer_lock
from pipeline.common.procs import default_workers
from pipeline.synth.jobs import Job, run_job
from pipeline.synth.plan import Plan, plan_corpus
from pipeline.synth.scenes import object_offset, s4_category
from pipeline.synth.sounds import class_voice
from pipeline.synth.testsets import clip_boxes, write_clean_mapping, write_is3, write_s4, write_vggss

FORMAT = 1


class SynthError(UserError):
    """A problem the user can fix (bad option, unusable output folder)."""


@dataclass
class SynthConfig:
    out: str = "vggsound"
    clips: int = 300
    seconds: float = 10.0
    classes: int = 10
    seed: int = 0
    test_fraction: float = 0.1
    offscreen_fraction: float = 0.1
    is3_images: int = 40
    s4_videos: int = 20
    clean_per_class: int = 3
    defects: int = 0  # training clips planted as each of muted, static, clipped and duplicate (pipeline.synth.plan)
    workers: int = 0  # 0: all cores


def settings(cfg: SynthConfig) -> dict:
    """What determines the corpus' content (everything but the output folder and the worker count)."""
    d = to_dict(cfg)
    del d["out"], d["workers"]
    if not d["defects"]:
        del d["defects"]           # corpora made before the option existed stay the same corpus
    return d


def validate(cfg: SynthConfig) -> None:
    if cfg.clips < 1:
        raise SynthError(f"--clips must be at least 1, got {cfg.clips}")
    if cfg.seconds < 1:
        raise SynthError(f"--seconds must be at least 1, got {cfg.seconds}")
    if cfg.classes < 2:
        raise SynthError(f"--classes must be at least 2 (distractors are of other classes), got {cfg.classes}")
    if not 0 <= cfg.test_fraction < 1 or not 0 <= cfg.offscreen_fraction < 1:
        raise SynthError("test_fraction and offscreen_fraction must be in [0, 1)")
    if min(cfg.is3_images, cfg.s4_videos, cfg.clean_per_class, cfg.defects) < 0 or cfg.workers < 0:
        raise SynthError("is3_images, s4_videos, clean_per_class, defects and workers must not be negative")


def check_out(out: Path, wanted: dict) -> None:
    """Refuse an output folder that holds anything but a synthetic corpus with the same settings."""
    if out.exists() and not out.is_dir():
        raise SynthError(f"{out}: exists and is not a folder")
    if not out.exists() or not any(not p.name.startswith(".") for p in out.iterdir()):
        return
    meta = out / "synth.json"
    try:
        found = json.loads(meta.read_text())
    except (OSError, ValueError):
        raise SynthError(f"{out}: folder is not empty and holds no readable synth.json; "
                         "choose an empty or new --out") from None
    found = found if isinstance(found, dict) else {}
    have = found.get("settings")
    if found.get("format") != FORMAT or have != wanted:
        diff = ", ".join(f"{k} {have.get(k)!r} (asked {v!r})" for k, v in wanted.items()
                         if isinstance(have, dict) and have.get(k) != v)
        raise SynthError(f"{meta}: this corpus was made with other settings ({diff or 'another format'}); "
                         "use the same settings to resume, or another --out")


def class_table(plan: Plan) -> list[dict]:
    out = []
    for k, look in enumerate(plan.looks):
        v = class_voice(k)
        out.append({"label": look.label, "is3_name": look.is3_name, "s4_category": s4_category(look.label),
                    "rgb": list(look.rgb), "hue": look.hue, "shape": look.shape, "texture": look.texture,
                    "sound": {"f0": round(v.f0, 3), "harmonics": v.harmonics, "tilt": v.tilt, "am_rate": v.am_rate,
                              "rhythm": v.rhythm}})
    return out


def corpus_meta(cfg: SynthConfig, plan: Plan, boxes: dict[str, dict], complete: bool) -> dict:
    clips = []
    for c in plan.clips:
        b = boxes[c.id]
        clips.append({"id": c.id, "ytid": c.ytid, "start": c.start, "label": plan.looks[c.cls].label,
                      "split": c.split, "offscreen": c.offscreen, "width": c.width, "height": c.height, "fps": c.fps,
                      "sample_rate": c.sample_rate, "channels": c.channels, "duration": c.seconds,
                      "box": b["boxes"][0] if b["boxes"] else None, "boxes": b["boxes"],
                      "distractors": b["distractors"]})
        # the picture changes: an object sits elsewhere at the start than at the centre (motion is symmetric in time)
        clips[-1]["moving"] = c.defect != "static" and any(
            object_offset(o, 0.0, c.seconds / 2, c.width, c.height)
            != object_offset(o, c.seconds / 2, c.seconds / 2, c.width, c.height) for o in c.scene.objects)
        if c.defect:
            clips[-1].update(defect=c.defect, **({"duplicate_of": c.duplicate_of} if c.duplicate_of else {}))
    return {"format": FORMAT, "complete": complete, "settings": settings(cfg),
            "box_format": "normalized [x1, y1, x2, y2] at the centre frame (t = duration / 2)",
            "classes": class_table(plan), "clips": clips,
            "testsets": {"vggss": {"clips": sum(c.split == "test" for c in plan.clips),
                                   "corrupt_boxes": [c.id for c in plan.clips if c.extra_boxes]},
                         "is3": {"images": len(plan.is3), "samples": 2 * len(plan.is3)},
                         "s4": {"videos": len(plan.s4)},
                         "is3_clean_audio": {"per_class": cfg.clean_per_class}}}


def vggsound_csv(plan: Plan) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")  # quotes a label only when it contains a comma
    for c in plan.clips:
        w.writerow([c.ytid, c.start, plan.looks[c.cls].label, c.split])
    return buf.getvalue()


def generate(cfg: SynthConfig, progress: bool = True) -> Path:
    """Build (or finish) the corpus described by `cfg`; returns its folder. One writer at a time: a second
    `generate` into the same folder is refused while the first runs."""
    validate(cfg)
    out = Path(cfg.out)
    check_out(out, settings(cfg))    # before the lock file is made: a foreign folder is not touched
    with writer_lock(out):
        return _generate(cfg, out, progress)


def _generate(cfg: SynthConfig, out: Path, progress: bool) -> Path:
    check_out(out, settings(cfg))
    try:
        plan = plan_corpus(cfg.clips, cfg.seconds, cfg.classes, cfg.seed, cfg.test_fraction, cfg.offscreen_fraction,
                           cfg.is3_images, cfg.s4_videos, cfg.clean_per_class, cfg.defects)
    except ValueError as exc:
        raise SynthError(f"--defects: {exc}") from None
    boxes = clip_boxes(plan)
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.rglob(".*.tmp"):  # temporary files of a killed run (pipeline.common.atomic's naming)
        stale.unlink()
    atomic_write_json(out / "synth.json", corpus_meta(cfg, plan, boxes, complete=False))
    save_config(cfg, out / "config.yaml")
    jobs = ([Job("clip", str(out), c, plan.looks, cfg.seconds) for c in plan.clips]
            + [Job("is3", str(out), s, plan.looks, cfg.seconds) for s in plan.is3]
            + [Job("s4", str(out), v, plan.looks, cfg.seconds) for v in plan.s4]
            + [Job("clean", str(out), c, plan.looks, cfg.seconds) for c in plan.clean if c.voices])
    pending = [j for j in jobs if not j.done()]
    workers = default_workers(cfg.workers)
    bar = tqdm(total=len(jobs), initial=len(jobs) - len(pending), desc="synth", unit="item", disable=not progress)
    if workers == 1 or len(pending) <= 1:
        for j in pending:
            run_job(j)
            bar.update()
    else:
        with multiprocessing.get_context("fork").Pool(min(workers, len(pending))) as pool:
            for _ in pool.imap_unordered(run_job, pending):
                bar.update()
    bar.close()
    write_vggss(out, plan, {k: v["boxes"] for k, v in boxes.items()})
    write_is3(out, plan)
    write_clean_mapping(out, plan)
    write_s4(out, plan)
    atomic_write_text(out / "vggsound.csv", vggsound_csv(plan))
    atomic_write_json(out / "synth.json", corpus_meta(cfg, plan, boxes, complete=True))
    return out
