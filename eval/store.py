"""The zarr store of one evaluation (`results/NAME/maps.zarr`): every raw map, per-sample maxima, embeddings, keys,
labels, ground truth, written batch by batch and marked complete only at the end.

Layout (N samples, S evaluation passes = offscreen seeds, h x w native map size, C feature channels):
  pos [N,h,w] f4, silence [N,h,w] f4, noise [N,S,h,w] f4, offscreen [N,S,h,w] f4      raw cosine maps
  max_pos [N], max_silence [N], max_noise [N,S], max_offscreen [N,S] f4              per-sample map maxima
  gt [N,224,224] u1                                                                 binary ground truth
  keys, labels, groups [N] str                                                      sample id, class, image id
  offscreen_index [S,N] i8                                                          sample whose audio was offscreen
  emb_audio [N,C], emb_image_mean [N,C], emb_image_peak [N,C] f4                    embeddings (see eval.run)
  retrieval [N,N] f4                                                                max_p S(image i, audio j)(p)
  overlay_index [K] i8, overlay_image [K,224,224,3] u1                              samples kept for the figures
attrs: format, complete, integrity, testset, data, checkpoint, model, seeds, gt_kind, audio_seconds, notes, config.
`complete` is false until `StoreWriter.finish`, which also records the SHA-256 of every file of the store (each
array's metadata and chunks; `integrity`, pipeline.common.integrity). `read_store` refuses an incomplete store and a
damaged one: a chunk deleted, changed or added since `finish` (zarr would read a missing chunk as zeros), naming the
first files at fault. Stores of format 1 carry no record and are refused too (run eval.run again).
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zarr

from eval.errors import EvalError
from pipeline.common import integrity

FORMAT = 2
ROOT_META = "zarr.json"  # holds the attributes, the integrity record among them: not part of the record
MAP_KINDS = ("pos", "silence", "noise", "offscreen")
CHUNK = 256


class StoreWriter:
    """Create `path` afresh (an older store there is removed) and fill it; arrays are created on their first write."""

    def __init__(self, path: str | Path, n: int, attrs: dict):
        self.path = Path(path)
        if self.path.exists():
            shutil.rmtree(self.path)
        self.n = n
        self.group = zarr.open_group(str(self.path), mode="w")
        self.group.attrs.update({**attrs, "format": FORMAT, "complete": False, "num_samples": n})

    def _array(self, name: str, shape: tuple, dtype) -> zarr.Array:
        if name in self.group:
            return self.group[name]
        chunks = (min(CHUNK, shape[0]),) + tuple(shape[1:]) if shape and shape[0] else shape
        return self.group.create_array(name, shape=shape, dtype=dtype, chunks=chunks)

    def put(self, name: str, value: np.ndarray) -> None:
        """Write a whole array (a list of str becomes a variable-length string array)."""
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            value = np.array(value, dtype=np.dtypes.StringDType())
        value = np.asarray(value)
        self._array(name, value.shape, value.dtype)[...] = value

    def put_rows(self, name: str, start: int, value: np.ndarray) -> None:
        """Write rows [start, start + len(value)) of an [N, ...] array."""
        value = np.asarray(value)
        self._array(name, (self.n,) + value.shape[1:], value.dtype)[start:start + len(value)] = value

    def finish(self) -> None:
        files = integrity.record(self.path, exclude=(ROOT_META,))
        self.group.attrs.update({"integrity": {"algorithm": integrity.ALGORITHM, "files": files}, "complete": True})


@dataclass
class Store:
    path: Path
    attrs: dict
    arrays: dict[str, np.ndarray]

    def __getitem__(self, name: str) -> np.ndarray:
        return self.arrays[name]

    def __contains__(self, name: str) -> bool:
        return name in self.arrays

    @property
    def maps_neg(self) -> dict[str, np.ndarray]:
        return {k: self.arrays[k] for k in MAP_KINDS[1:]}


def read_store(path: str | Path) -> Store:
    """Load a complete store into memory; a missing, foreign or incomplete store is an EvalError naming it."""
    path = Path(path)
    if not (path / "zarr.json").is_file():
        raise EvalError(f"{path}: no map store here (expected the maps.zarr written by eval.run)")
    try:
        group = zarr.open_group(str(path), mode="r")
        attrs = dict(group.attrs)
    except Exception as exc:  # zarr raises many types for damaged metadata
        raise EvalError(f"{path}: cannot open the map store: {exc}") from None
    if attrs.get("format") == 1:
        raise EvalError(f"{path}: a map store of format 1 (written before stores carried an integrity record); "
                        f"run eval.run again")
    if attrs.get("format") != FORMAT:
        raise EvalError(f"{path}: not a map store of format {FORMAT} (found {attrs.get('format')!r})")
    if not attrs.get("complete"):
        raise EvalError(f"{path}: the map store is incomplete (the evaluation did not finish); run eval.run again")
    check_integrity(path, attrs)
    missing = [k for k in MAP_KINDS + ("gt", "keys", "labels") if k not in group]
    if missing:
        raise EvalError(f"{path}: the map store lacks {missing}")
    arrays = {name: np.asarray(group[name][...]) for name in group.array_keys()}
    for name in ("keys", "labels", "groups"):
        if name in arrays:
            arrays[name] = np.array(arrays[name].tolist(), dtype=str)
    return Store(path, attrs, arrays)


def check_integrity(path: Path, attrs: dict) -> None:
    """Refuse a store whose files differ from the record `finish` made (EvalError naming the files at fault)."""
    rec = attrs.get("integrity")
    if not isinstance(rec, dict) or not isinstance(rec.get("files"), dict):
        raise EvalError(f"{path}: the map store has no integrity record; run eval.run again")
    problems = integrity.verify(path, rec["files"], exclude=(ROOT_META,))
    if problems:
        more = f" (+{len(problems) - 3} more)" if len(problems) > 3 else ""
        raise EvalError(f"{path}: damaged map store: {'; '.join(problems[:3])}{more}")
