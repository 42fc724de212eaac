"""Integrity records: what a writer saw when it finished, so that a reader can prove a folder or file is intact.

`record(root, exclude)` maps every file below `root` (relative POSIX paths, `exclude` left out) to its SHA-256;
`verify(root, recorded, exclude)` compares the folder with such a record and returns the problems, one line each
(a recorded file missing or different, a file that was not there when the record was made). `sha256_file` hashes one
file. Writers store the record next to what they wrote (a zarr attribute, a checkpoint's state.json) and readers
refuse anything that does not match: a deleted zarr chunk must not read as zeros, a flipped byte in a checkpoint must
not load.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

ALGORITHM = "sha256"
_BLOCK = 1 << 20


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(_BLOCK):
            h.update(block)
    return h.hexdigest()


def _files(root: Path, exclude: frozenset[str]) -> dict[str, Path]:
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if rel not in exclude and not p.is_dir():
            out[rel] = p
    return out


def record(root: str | Path, exclude: tuple[str, ...] = ()) -> dict[str, str]:
    """{relative path: sha256} of every file below `root` except `exclude`."""
    return {rel: sha256_file(p) for rel, p in _files(Path(root), frozenset(exclude)).items()}


def verify(root: str | Path, recorded: dict[str, str], exclude: tuple[str, ...] = ()) -> list[str]:
    """The differences between the files below `root` and `recorded`, one line each (empty: intact)."""
    root = Path(root)
    present = _files(root, frozenset(exclude))
    problems = [f"{rel}: missing" for rel in sorted(set(recorded) - set(present))]
    problems += [f"{rel}: not written by the run that recorded the folder"
                 for rel in sorted(set(present) - set(recorded))]
    for rel in sorted(set(recorded) & set(present)):
        if not present[rel].is_file():
            problems.append(f"{rel}: not a regular file")
        elif sha256_file(present[rel]) != recorded[rel]:
            problems.append(f"{rel}: content differs from what was recorded ({ALGORITHM})")
    return problems
