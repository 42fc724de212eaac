"""Annotation files of the synthetic test sets, in the formats of the public evaluation code.

- `testsets/vggss/vggss.json`: LVS/EZ-VSL/SSL-Align's VGG-SS list `[{file, class, bbox: [[x1, y1, x2, y2], ...]}]`,
  normalized to the full frame, plus `visible`: the classes of every object in the frame (a field the real files do
  not have; the evaluator's offscreen draw excludes them, as it does on IS3, so offscreen audio is off screen); a few
  deliberately corrupt boxes (zero size, the -2.88e16 sentinel) as in the real file. `class_files_dict.json`:
  `{class: [file, ...]}` (what the ICASSP code draws offscreen audio from).
- `testsets/is3/`: `IS3_annotation.json` `[{image, audio, gt_box, gt_mask, class, visible}]` (box in 224-pixel
  coordinates, class = the VGGSound label; file stems `{clsA}_{clsB}_{id}_{target}` use the short names without
  underscores),
  SSL-Align's `synthetic3240_bbox.json` `[{image, audio, gt_box}]` and `synthetic3240_seg.json`
  `[{image, audio, gt_box: mask path, offset: 1}]`, and `class_files_dict.json` `{class: [stem, ...]}`.
  Paths are relative to the test-set folder (the public readers keep only the file name).
- `testsets/is3_clean_audio/class_mapping.json`: `{IS3 class (VGGSound label): IS3+ class (short name)}`, the
  category simplification `python -m eval.is3plus` applies; the clean-audio folders are named by the IS3+ class.
- `testsets/s4/`: AVSBench's `s4_meta_data.csv` (header `name,start_time,category,split`, plus `visible`: the
  `;`-separated categories of the objects in the video) and SSL-Align's
  `s4_box.json` `[{image, audio, gt_box}]`, one entry per frame.
"""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np

from pipeline.common.atomic import atomic_write_json, atomic_write_text
from pipeline.synth import scenes
from pipeline.synth.plan import S4_FRAMES, S4_SECONDS, Plan, normalized_box, s4_frame_time


def write_vggss(root: Path, plan: Plan, boxes: dict[str, list]) -> None:
    d = root / "testsets/vggss"
    entries, by_class = [], {}
    for c in plan.clips:
        if c.split != "test":
            continue
        label = plan.looks[c.cls].label
        entries.append({"file": c.id, "class": label, "bbox": boxes[c.id] + c.extra_boxes,
                        "visible": _visible(c.scene, plan)})
        by_class.setdefault(label, []).append(c.id)
    atomic_write_text(d / "vggss.json", _compact_json(entries))
    atomic_write_json(d / "class_files_dict.json", dict(sorted(by_class.items())))


def _visible(scene, plan: Plan) -> list[str]:
    """The classes of every object in the frame, sounding or not (the evaluator never draws offscreen audio of them)."""
    return sorted({plan.looks[o.cls].label for o in scene.objects})


def _compact_json(obj) -> str:
    return json.dumps(obj) + "\n"


def write_is3(root: Path, plan: Plan) -> None:
    d = root / "testsets/is3"
    ann, bbox, seg, by_class = [], [], [], {}
    for s in plan.is3:
        pixel_boxes = scenes.centre_boxes(s.scene, plan.looks)
        for t, stem in enumerate(s.stems):
            label = plan.looks[s.classes[t]].label
            box = [float(v) for v in pixel_boxes[t]]
            image, audio, mask = f"images/{stem}.jpg", f"audio_wav/{stem}.wav", f"gt_masks/{stem}.jpg"
            ann.append({"image": image, "audio": audio, "gt_box": box, "gt_mask": mask, "class": label,
                        "visible": _visible(s.scene, plan)})
            bbox.append({"image": image, "audio": audio, "gt_box": box})
            seg.append({"image": image, "audio": audio, "gt_box": mask, "offset": 1})
            by_class.setdefault(label, []).append(stem)
    atomic_write_text(d / "IS3_annotation.json", _compact_json(ann))
    atomic_write_text(d / "synthetic3240_bbox.json", _compact_json(bbox))
    atomic_write_text(d / "synthetic3240_seg.json", _compact_json(seg))
    atomic_write_json(d / "class_files_dict.json", dict(sorted(by_class.items())))


def write_clean_mapping(root: Path, plan: Plan) -> None:
    mapping = {plan.looks[c.cls].label: plan.looks[c.cls].is3_name for c in plan.clean}
    atomic_write_json(root / "testsets/is3_clean_audio/class_mapping.json", mapping)


def write_s4(root: Path, plan: Plan) -> None:
    d = root / "testsets/s4"
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["name", "start_time", "category", "split", "visible"])
    boxes = []
    centre = S4_SECONDS / 2
    for v in plan.s4:
        w.writerow([v.name, 0, v.category, "test", ";".join(sorted({scenes.s4_category(plan.looks[o.cls].label)
                                                                     for o in v.scene.objects}))])
        sounding = next(i for i, o in enumerate(v.scene.objects) if o.sounding)
        for k in range(1, S4_FRAMES + 1):
            m = scenes.object_mask(v.scene, plan.looks, sounding, s4_frame_time(k), centre)
            ys, xs = np.flatnonzero(m.any(axis=1)), np.flatnonzero(m.any(axis=0))
            boxes.append({"image": f"visual_frames/test/{v.category}/{v.name}/{v.name}_{k}.png",
                          "audio": f"audio_wav/test/{v.category}/{v.name}.wav",
                          "gt_box": [float(xs[0]), float(ys[0]), float(xs[-1] + 1), float(ys[-1] + 1)]})
    atomic_write_text(d / "s4_meta_data.csv", buf.getvalue())
    atomic_write_text(d / "s4_box.json", _compact_json(boxes))


def clip_boxes(plan: Plan) -> dict[str, dict]:
    """Per clip: normalized boxes at the centre frame of the sounding objects and of the distractors."""
    out = {}
    for c in plan.clips:
        pixel = scenes.centre_boxes(c.scene, plan.looks)
        snd = [normalized_box(b, c.width, c.height) for o, b in zip(c.scene.objects, pixel) if o.sounding]
        dis = [{"label": plan.looks[o.cls].label, "box": normalized_box(b, c.width, c.height)}
               for o, b in zip(c.scene.objects, pixel) if not o.sounding]
        out[c.id] = {"boxes": snd, "distractors": dis}
    return out
