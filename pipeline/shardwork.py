"""The sharder's per-clip work, run in worker processes: find a clip's input files, decode, encode, validate.

`process_clip` returns the clip's webdataset members or a failure record `{"id", "path", "reason", "detail"}`;
it never raises for a bad input (a bug still raises).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from pipeline import listing, media


@dataclass(frozen=True)
class ClipOptions:
    frames: int
    min_duration: float
    frame_size: int
    audio_format: str
    jpeg_quality: int


_STATE: dict = {}


def init_worker(opts: ClipOptions, layout: listing.Layout) -> None:
    _STATE["opts"] = opts
    _STATE["layout"] = layout


def failure(cid: str, layout: listing.Layout, reason: str, detail: str) -> dict:
    inputs = layout.inputs(cid)
    path = inputs.get("video") or f"{inputs['frames']} + {inputs['audio']}"
    return {"id": cid, "path": path, "reason": reason, "detail": detail}


def _decode(cid: str, layout: listing.Layout, opts: ClipOptions) -> media.Clip:
    inputs = layout.inputs(cid)
    if layout.kind == "video":
        if not os.path.exists(inputs["video"]):
            raise media.MediaError("missing", "file does not exist")
        return media.decode_video(inputs["video"], frames=opts.frames, min_duration=opts.min_duration)
    frames_dir, frame = Path(inputs["frames"]), Path(inputs["frame"])
    if frames_dir.is_dir():
        frame_paths = list(frames_dir.glob("*.jpg"))
    elif frame.is_file():
        frame_paths = [frame]
    else:
        raise media.MediaError("missing", f"neither {frames_dir}/ nor {frame} exists")
    if not os.path.exists(inputs["audio"]):
        raise media.MediaError("missing", f"{inputs['audio']} does not exist")
    return media.decode_extracted(frame_paths, Path(inputs["audio"]), frames=opts.frames,
                                  min_duration=opts.min_duration)


def process_clip(clip: list) -> tuple[str, dict[str, bytes] | None, dict | None]:
    """One planned clip `[id, ytid, start, label, class_index, split]` -> (id, members, None) or (id, None, failure).

    `split` is the clip's shard split (train, val or test).
    """
    opts: ClipOptions = _STATE["opts"]
    layout: listing.Layout = _STATE["layout"]
    cid, ytid, start, label, class_index, split = clip
    try:
        decoded = _decode(cid, layout, opts)
        meta = {"id": cid, "ytid": ytid, "start": start, "label": label, "class_index": class_index,
                "split": split}
        members = media.encode_sample(decoded, meta, frame_size=opts.frame_size, audio_format=opts.audio_format,
                                      jpeg_quality=opts.jpeg_quality)
        return cid, members, None
    except media.MediaError as err:
        return cid, None, failure(cid, layout, err.reason, err.detail)
