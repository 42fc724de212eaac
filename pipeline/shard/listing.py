"""Which clips to shard: read `vggsound.csv` (+ an optional list file of clip ids) and find each clip's input files.

The csv has no header: `ytid,start,label,split` (labels quoted when they contain commas). Clip id is
`{ytid}_{start:06d}`; ids are restricted to `[A-Za-z0-9_-]` so that they are safe as file names and as webdataset keys
(no dots). Classes are the sorted unique labels of the whole csv. Inputs are either `video/{id}.mp4` (or `{id}.mp4` in
the source folder itself) or the extracted layout `frames/{id}/*.jpg` or `frames/{id}.jpg` with `audio/{id}.wav`.
"""
from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

from pipeline.shard.format import ShardError

ID_RE = re.compile(r"^[A-Za-z0-9_-]+$")
SPLITS = ("train", "test")
_LIST_SUFFIXES = (".mp4", ".wav", ".jpg")


@dataclass(frozen=True)
class Row:
    id: str
    ytid: str
    start: int
    label: str
    split: str


def clip_id(ytid: str, start: int) -> str:
    return f"{ytid}_{start:06d}"


def read_csv(path: Path) -> list[Row]:
    """Every row of a VGGSound csv, in file order; a malformed row or a duplicate id is a ShardError."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ShardError(f"{path}: cannot read: {exc}") from None
    rows: list[Row] = []
    seen: set[str] = set()
    for lineno, rec in enumerate(csv.reader(text.splitlines()), 1):
        if not rec or (len(rec) == 1 and not rec[0].strip()):
            continue
        if len(rec) != 4:
            raise ShardError(f"{path}:{lineno}: expected 4 columns ytid,start,label,split, got {len(rec)}")
        ytid, start_s, label, split = (c.strip() for c in rec)
        if not ID_RE.match(ytid):
            raise ShardError(f"{path}:{lineno}: ytid {ytid!r} has characters outside [A-Za-z0-9_-]")
        try:
            start = int(start_s)
        except ValueError:
            raise ShardError(f"{path}:{lineno}: start {start_s!r} is not an integer number of seconds") from None
        if start < 0:
            raise ShardError(f"{path}:{lineno}: start {start} is negative")
        if split not in SPLITS:
            raise ShardError(f"{path}:{lineno}: split {split!r} is not one of {list(SPLITS)}")
        if not label:
            raise ShardError(f"{path}:{lineno}: empty label")
        cid = clip_id(ytid, start)
        if cid in seen:
            raise ShardError(f"{path}:{lineno}: duplicate clip {cid}")
        seen.add(cid)
        rows.append(Row(cid, ytid, start, label, split))
    if not rows:
        raise ShardError(f"{path}: no rows")
    return rows


def read_id_list(path: Path) -> list[str]:
    """Clip ids, one a line (blank lines and `#` comments skipped; a trailing .mp4/.wav/.jpg is dropped)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ShardError(f"{path}: cannot read: {exc}") from None
    ids: list[str] = []
    seen: set[str] = set()
    for lineno, line in enumerate(lines, 1):
        item = line.strip()
        if not item or item.startswith("#"):
            continue
        for suffix in _LIST_SUFFIXES:
            if item.endswith(suffix):
                item = item[: -len(suffix)]
        if not ID_RE.match(item):
            raise ShardError(f"{path}:{lineno}: clip id {item!r} has characters outside [A-Za-z0-9_-]")
        if item not in seen:
            seen.add(item)
            ids.append(item)
    if not ids:
        raise ShardError(f"{path}: no clip ids")
    return ids


def classes_of(rows: list[Row]) -> list[str]:
    return sorted({r.label for r in rows})


@dataclass(frozen=True)
class Layout:
    """Where the inputs of a clip live: `kind` is 'video' (mp4 files) or 'extracted' (frames + wav)."""

    kind: str
    video_dir: Path
    frames_dir: Path
    audio_dir: Path

    def inputs(self, cid: str) -> dict[str, str]:
        if self.kind == "video":
            return {"video": str(self.video_dir / f"{cid}.mp4")}
        return {"frames": str(self.frames_dir / cid), "frame": str(self.frames_dir / f"{cid}.jpg"),
                "audio": str(self.audio_dir / f"{cid}.wav")}


def detect_layout(src: Path, kind: str, video_dir: str, frames_dir: str, audio_dir: str) -> Layout:
    """`kind` 'auto': `video_dir` if it exists, else `frames_dir` + `audio_dir`, else mp4 files directly in `src`."""
    if not src.is_dir():
        raise ShardError(f"{src}: source folder does not exist")
    layout = Layout(kind, src / video_dir, src / frames_dir, src / audio_dir)
    if kind == "video":
        if not layout.video_dir.is_dir():
            raise ShardError(f"{layout.video_dir}: video folder does not exist")
        return layout
    if kind == "extracted":
        for d in (layout.frames_dir, layout.audio_dir):
            if not d.is_dir():
                raise ShardError(f"{d}: folder of the extracted layout does not exist")
        return layout
    if layout.video_dir.is_dir():
        return Layout("video", layout.video_dir, layout.frames_dir, layout.audio_dir)
    if layout.frames_dir.is_dir() and layout.audio_dir.is_dir():
        return Layout("extracted", layout.video_dir, layout.frames_dir, layout.audio_dir)
    if any(src.glob("*.mp4")):
        return Layout("video", src, layout.frames_dir, layout.audio_dir)
    raise ShardError(f"{src}: found neither {video_dir}/ nor {frames_dir}/ + {audio_dir}/ nor mp4 files")
