"""Readers for the four test sets in their official layouts: VGG-SS, IS3, IS3+ (from `eval.is3plus`), AVS-Bench S4.

Each reader checks the annotation against its format, and `read_testset` returns a `TestSet` of the samples `_select`
keeps (every referenced image, audio and mask file must exist, unless `allow_missing`; only those of `subset` when
given; the coverage is recorded in `notes`): one `Sample` per (image, audio) pair with its class label, its image
group and its ground truth, which `TestSet.gt(i)` rasterises as a binary uint8 [224, 224] map (REFERENCE.md D.2, E):
- VGG-SS (`vggss.json`, or `annotations.json` / `vggss_annotations.json` as the public code names it, a list of
  {file, class, bbox: [[x1, y1, x2, y2], ...]} normalised to the frame; frames/{file}.jpg, audio/{file}.wav): every
  coordinate is clipped to [0, 1], multiplied by 224 and truncated to an int; the GT is the union of the boxes.
  Degenerate and corrupt boxes (zero width, the -2.88e16 sentinel) are kept clipped, so a clip whose boxes are all
  degenerate has an empty GT; such clips stay in the set (as in the ICASSP evaluation) and are listed in
  `TestSet.notes`.
- IS3 (`IS3_annotation.json`, or SSL-Align's `synthetic3240_bbox.json`, one record per annotation with `image`,
  `audio` (only the file name is used), `gt_box` in 224-pixel coordinates and an optional `class`/`category`;
  images/{stem}.jpg, audio_wav/{stem}.wav (or audio_waw/, as SSL-Align's README spells it), masks in gt_masks/ or
  gt_segmentation/): two annotations share one image; the stem is `{clsA}_{clsB}_{id}_{target}`, the
  image group is the stem without its last `_` part, and the label is the record's class or else that last part.
- IS3+ (`IS3plus_annotation.json` written by `python -m eval.is3plus`): IS3 records whose paths are relative to the
  IS3+ folder, with the clean audio and the simplified class.
- S4 (`s4_meta_data.csv` with columns name, start_time, category, split; `visual_frames`, `audio_wav`, `gt_masks`
  under the folder or its `s4_data/`): the 5 frames of every video of the split, each paired with the video's 5 s wav.
Masks (IS3, IS3+, S4) are read as grey levels, resized to 224 (bilinear) when needed and binarised at > 127.
Where an annotation lists the classes of every object in the picture (`visible`: a field the synthetic test sets add
to each format, `;`-separated in S4's csv), `Sample.visible` holds them; offscreen audio is never of those classes.
"""
from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from eval.errors import EvalError

SIZE = 224
TESTSETS = ("vggss", "is3", "is3plus", "s4")
AUDIO_SECONDS = {"vggss": 10.0, "is3": 10.0, "is3plus": 10.0, "s4": 5.0}
IS3PLUS_ANNOTATION = "IS3plus_annotation.json"


@dataclass(frozen=True)
class Sample:
    key: str                  # unique id of the (image, audio) pair
    image: Path
    audio: Path
    label: str                # class name
    group: str                # image id: the samples of one group share one picture (IS3: two targets; S4: a video)
    boxes: tuple[tuple[int, int, int, int], ...] = ()   # (x1, y1, x2, y2) in 224 px, for box ground truth
    mask: Path | None = None  # for mask ground truth
    visible: tuple[str, ...] = ()   # classes of every object in the picture, where the annotation says (synthetic sets)


@dataclass
class TestSet:
    name: str
    root: Path
    samples: list[Sample]
    gt_kind: str              # "box" or "mask"
    audio_seconds: float
    notes: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def keys(self) -> list[str]:
        return [s.key for s in self.samples]

    @property
    def labels(self) -> list[str]:
        return [s.label for s in self.samples]

    def gt(self, i: int) -> np.ndarray:
        """Binary ground truth of sample i, uint8 [224, 224]."""
        s = self.samples[i]
        if self.gt_kind == "mask":
            return read_mask(s.mask)
        return boxes_to_gt(s.boxes)


def boxes_to_gt(boxes) -> np.ndarray:
    """Union of (x1, y1, x2, y2) pixel boxes as a uint8 [224, 224] map (gt[y1:y2, x1:x2] = 1)."""
    gt = np.zeros((SIZE, SIZE), np.uint8)
    for x1, y1, x2, y2 in boxes:
        gt[y1:y2, x1:x2] = 1
    return gt


def read_mask(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as im:
            grey = im.convert("L")
    except (OSError, UnidentifiedImageError) as exc:
        raise EvalError(f"{path}: cannot read mask: {exc}") from None
    if grey.size != (SIZE, SIZE):
        grey = grey.resize((SIZE, SIZE), Image.BILINEAR)
    return (np.asarray(grey) > 127).astype(np.uint8)


def _load_json(path: Path):
    if not path.is_file():
        raise EvalError(f"{path}: annotation file not found")
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EvalError(f"{path}: not valid JSON: {exc}") from None


def _select(ts: TestSet, subset: str | Path | None, allow_missing: bool) -> TestSet:
    """The samples that are scored: those of `subset` (a file of ids, one per line, `#` comments; an id names a
    sample or a whole image group, e.g. an S4 video), then those whose files are all on disk. Missing files are an
    error that counts them, unless `allow_missing`. `ts.notes["coverage"]`: scored / annotated samples, the subset,
    how many were missing, and a digest of the scored keys (reports compare rows only over the same samples)."""
    samples, annotated = ts.samples, len(ts.samples)
    if not samples:
        raise EvalError(f"{ts.root}: the {ts.name} annotations list no samples")
    keys = [s.key for s in samples]
    if len(set(keys)) != len(keys):
        dup = next(k for k in keys if keys.count(k) > 1)
        raise EvalError(f"{ts.root}: sample {dup!r} is listed twice")
    if subset:
        try:
            wanted = {ln.split("#", 1)[0].strip() for ln in Path(subset).read_text().splitlines()} - {""}
        except (OSError, UnicodeDecodeError) as exc:
            raise EvalError(f"{subset}: cannot read the subset list: {exc}") from None
        known = set(keys) | {s.group for s in samples}
        unknown = sorted(wanted - known)
        if unknown:
            raise EvalError(f"{subset}: {len(unknown)} of its {len(wanted)} ids are not in the {ts.name} annotations "
                            f"(first: {unknown[0]!r})")
        samples = [s for s in samples if s.key in wanted or s.group in wanted]
    need = (lambda s: (s.image, s.audio, s.mask)) if ts.gt_kind == "mask" else (lambda s: (s.image, s.audio))
    missing = [(s, next(p for p in need(s) if not p.is_file())) for s in samples
               if not all(p.is_file() for p in need(s))]
    if missing and not allow_missing:
        raise EvalError(f"{ts.root}: {len(missing)} of {len(samples)} {ts.name} samples have missing files (first: "
                        f"{missing[0][1]}); --allow-missing scores the {len(samples) - len(missing)} that are there")
    gone = {s.key for s, _ in missing}
    samples = [s for s in samples if s.key not in gone]
    if not samples:
        raise EvalError(f"{ts.root}: no {ts.name} sample is left to score")
    scored = sorted(s.key for s in samples)
    coverage = {"scored": len(samples), "annotated": annotated, "missing": len(missing),
                "subset": str(Path(subset).resolve()) if subset else None,
                "keys_sha256": hashlib.sha256("\n".join(scored).encode()).hexdigest()}
    notes = dict(ts.notes, coverage=coverage)
    if "empty_gt" in notes:
        kept = {s.key for s in samples}
        notes["empty_gt"] = [k for k in notes["empty_gt"] if k in kept]
    return TestSet(ts.name, ts.root, samples, ts.gt_kind, ts.audio_seconds, notes)


def _pixel_box(values, scale: float, where: str) -> tuple[int, int, int, int]:
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise EvalError(f"{where}: a box must be 4 numbers, got {values!r}") from None
    if arr.shape != (4,) or not np.all(np.isfinite(arr)):
        raise EvalError(f"{where}: a box must be 4 finite numbers, got {values!r}")
    if scale == 1.0:   # normalised coordinates (VGG-SS)
        arr = np.clip(arr, 0.0, 1.0) * SIZE
    else:              # pixel coordinates (IS3)
        arr = np.clip(arr, 0.0, SIZE)
    x1, y1, x2, y2 = (int(v) for v in arr)
    return x1, y1, x2, y2


VGGSS_ANNOTATIONS = ("vggss.json", "annotations.json", "vggss_annotations.json")   # names in the public code
IS3_ANNOTATIONS = ("IS3_annotation.json", "synthetic3240_bbox.json")
IS3_AUDIO_DIRS = ("audio_wav", "audio_waw")            # the second: the spelling of SSL-Align's README


def _annotation(root: Path, names: tuple[str, ...], same_format: bool) -> Path:
    """The test set's annotation file: the first of `names` it has. Where the names are one format under several
    names (`same_format`), two of them with different contents is an error (which one would be scored?); otherwise
    the first is the richer one (IS3_annotation.json has the classes synthetic3240_bbox.json lacks)."""
    found = [root / n for n in names if (root / n).is_file()]
    if not found:
        raise EvalError(f"{root / names[0]}: annotation file not found (also looked for "
                        f"{', '.join(names[1:])})")
    for other in found[1:] if same_format else []:
        if _load_json(other) != _load_json(found[0]):
            raise EvalError(f"{root}: {found[0].name} and {other.name} are both here and differ; keep one")
    return found[0]


def _visible(values, where: str) -> tuple[str, ...]:
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise EvalError(f"{where}: visible must be a list of class names, got {values!r}")
    return tuple(sorted(set(values)))


def read_vggss(root: Path) -> TestSet:
    ann = _annotation(root, VGGSS_ANNOTATIONS, same_format=True)
    records = _load_json(ann)
    if not isinstance(records, list):
        raise EvalError(f"{ann}: expected a list of {{file, class, bbox}} records")
    samples, degenerate, empty = [], 0, []
    for i, rec in enumerate(records):
        where = f"{ann} record {i}"
        if not isinstance(rec, dict) or not {"file", "class", "bbox"} <= set(rec):
            raise EvalError(f"{where}: expected keys file, class, bbox")
        if not isinstance(rec["bbox"], list):
            raise EvalError(f"{where}: bbox must be a list of boxes")
        clip = str(rec["file"]).split("/")[-1]
        boxes = tuple(_pixel_box(b, 1.0, where) for b in rec["bbox"])
        degenerate += sum(1 for x1, y1, x2, y2 in boxes if x2 <= x1 or y2 <= y1)
        if not boxes_to_gt(boxes).any():
            empty.append(clip)
        samples.append(Sample(key=clip, image=root / "frames" / f"{clip}.jpg", audio=root / "audio" / f"{clip}.wav",
                              label=str(rec["class"]), group=clip, boxes=boxes,
                              visible=_visible(rec.get("visible", []), where)))
    return TestSet("vggss", root, samples, "box", AUDIO_SECONDS["vggss"],
                   notes={"degenerate_boxes": degenerate, "empty_gt": empty})


def _find_mask(root: Path, stem: str) -> Path:
    for folder in ("gt_masks", "gt_segmentation"):
        for ext in (".jpg", ".png"):
            if (root / folder / f"{stem}{ext}").is_file():
                return root / folder / f"{stem}{ext}"
    return root / "gt_masks" / f"{stem}.jpg"   # reported as missing by _select


def _read_is3_records(name: str, root: Path, ann: Path, gt: str, relative: bool) -> TestSet:
    records = _load_json(ann)
    if not isinstance(records, list):
        raise EvalError(f"{ann}: expected a list of {{image, audio, gt_box}} records")
    audio_dir = next((root / d for d in IS3_AUDIO_DIRS if (root / d).is_dir()), root / IS3_AUDIO_DIRS[0])
    samples = []
    for i, rec in enumerate(records):
        where = f"{ann} record {i}"
        if not isinstance(rec, dict) or not {"image", "audio", "gt_box"} <= set(rec):
            raise EvalError(f"{where}: expected keys image, audio, gt_box")
        stem = Path(str(rec["image"])).stem
        if "_" not in stem:
            raise EvalError(f"{where}: image name {stem!r} is not of the form {{clsA}}_{{clsB}}_{{id}}_{{target}}")
        group, target = stem.rsplit("_", 1)
        label = str(rec.get("class", rec.get("category", target)))
        if relative:
            image, audio = root / str(rec["image"]), root / str(rec["audio"])
            mask = root / str(rec["gt_mask"]) if "gt_mask" in rec else _find_mask(root, stem)
        else:
            image = root / "images" / Path(str(rec["image"])).name
            audio = audio_dir / Path(str(rec["audio"])).name
            mask = _find_mask(root, stem)
        samples.append(Sample(key=stem, image=image, audio=audio, label=label, group=group,
                              boxes=(_pixel_box(rec["gt_box"], float(SIZE), where),), mask=mask,
                              visible=_visible(rec.get("visible", []), where)))
    return TestSet(name, root, samples, gt, AUDIO_SECONDS[name])


def read_is3(root: Path, gt: str = "mask") -> TestSet:
    return _read_is3_records("is3", root, _annotation(root, IS3_ANNOTATIONS, same_format=False), gt, relative=False)


def read_is3plus(root: Path, gt: str = "mask") -> TestSet:
    return _read_is3_records("is3plus", root, root / IS3PLUS_ANNOTATION, gt, relative=True)


def read_s4(root: Path, split: str = "test") -> TestSet:
    meta = root / "s4_meta_data.csv"
    if not meta.is_file():
        raise EvalError(f"{meta}: S4 metadata not found")
    base = root / "s4_data" if (root / "s4_data").is_dir() else root
    try:
        with open(meta, newline="") as fh:
            rows = list(csv.reader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise EvalError(f"{meta}: cannot read: {exc}") from None
    header = [h.strip() for h in rows[0]] if rows else []
    if "category" not in header or "split" not in header:
        raise EvalError(f"{meta}: expected a header with columns name, start_time, category, split")
    c_cat, c_split = header.index("category"), header.index("split")
    c_visible = header.index("visible") if "visible" in header else None
    samples = []
    for row in rows[1:]:
        if not row:
            continue
        if len(row) != len(header):
            raise EvalError(f"{meta}: row {row!r} does not have {len(header)} columns")
        if row[c_split].strip() != split:
            continue
        video, cat = row[0].strip(), row[c_cat].strip()
        visible = tuple(sorted(v for v in row[c_visible].split(";") if v)) if c_visible is not None else ()
        for k in range(1, 6):
            samples.append(Sample(
                key=f"{video}_{k}", label=cat, group=video, visible=visible,
                image=base / "visual_frames" / split / cat / video / f"{video}_{k}.png",
                audio=base / "audio_wav" / split / cat / f"{video}.wav",
                mask=base / "gt_masks" / split / cat / video / f"{video}_{k}.png"))
    return TestSet("s4", root, samples, "mask", AUDIO_SECONDS["s4"])


def read_testset(name: str, root: str | Path, gt: str = "auto", *, subset: str | Path | None = None,
                 allow_missing: bool = False) -> TestSet:
    """Read test set `name` (vggss|is3|is3plus|s4) from folder `root`; gt: auto (the paper's: boxes on VGG-SS,
    masks elsewhere), box or mask (IS3 / IS3+ only: VGG-SS has only boxes, S4 only masks); `subset` and
    `allow_missing` choose the samples scored (`_select`)."""
    return _select(_read(name, root, gt), subset, allow_missing)


def _read(name: str, root: str | Path, gt: str) -> TestSet:
    root = Path(root)
    if name not in TESTSETS:
        raise EvalError(f"unknown test set {name!r}; choose one of {list(TESTSETS)}")
    if not root.is_dir():
        raise EvalError(f"{root}: test set folder not found")
    if gt not in ("auto", "box", "mask"):
        raise EvalError(f"gt must be auto, box or mask, got {gt!r}")
    if name == "vggss":
        if gt == "mask":
            raise EvalError("vggss has box annotations only (gt=mask is not possible)")
        return read_vggss(root)
    if name == "s4":
        if gt == "box":
            raise EvalError("s4 has mask annotations only (gt=box is not possible)")
        return read_s4(root)
    kind = "mask" if gt == "auto" else gt
    return read_is3(root, kind) if name == "is3" else read_is3plus(root, kind)
