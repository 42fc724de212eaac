"""Output folders: one writer at a time, and the files of a folder replaced only by a complete new set.

Everything stays inside the output folder the user named:
- `writer_lock(out)`: an exclusive `flock` on `out/.lock` for the life of the `with` block, the file removed at its
  end. A second writer gets `OutputBusy`, a one-line user error naming the holder (pid, host, command, start time,
  as the holder wrote them into the file). The kernel drops the lock when its process dies, so a lock file left by
  `kill -9` is never stale. (flock is advisory; on a network file system it works where the server supports locks.)
- `build_aside(out, replace)`: yields an empty staging folder `out/.staging-{pid}`; when the block finishes, the
  folder's previous visible entries that match `replace` (glob patterns of what the command writes; anything else is
  left alone) move into `out/.replaced-{pid}`, the staging folder's entries move into `out`, and only then is the
  previous set deleted: renames only, after all the work is done. If the block
  raises (or the process is killed during the work), the staging folder is discarded and `out` keeps its previous
  files: a failed re-run never destroys the results of a good one. Should a crash fall inside the few renames of the
  swap, the next `build_aside` finds `.replaced-*` and puts the previous set back when `out` holds nothing else.
- `replacing(out, replace)`: what a command that writes a whole result folder uses: it refuses a folder holding
  visible entries it would not write (replacing the folder's files would otherwise mix or delete the user's own),
  before the lock file is made and again under the lock, then holds `writer_lock` and `build_aside`.
Hidden entries (names starting with '.') belong to this machinery and are never part of a result.
"""
from __future__ import annotations

import contextlib
import datetime
import fcntl
import fnmatch
import json
import os
import shutil
import socket
import sys
from pathlib import Path
from typing import Iterator

from pipeline.common.cli import UserError

LOCK = ".lock"


class OutputBusy(UserError):
    """Another process is writing the same output."""


@contextlib.contextmanager
def writer_lock(out: str | Path, what: str | None = None, name: str = LOCK) -> Iterator[None]:
    """Hold the exclusive writer lock `out/name` while the block runs; `what` names the output in the error (default:
    the folder). The folder is created if needed (and removed again if the block leaves it empty); the lock file is
    removed when the block ends, so a finished output holds no trace of it."""
    out = Path(out)
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{exc.filename or out}: {exc.strerror or exc}") from None
    path = out / name
    fd = _acquire(path, what or str(out))
    try:
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "command": " ".join(sys.argv),
                  "since": datetime.datetime.now().isoformat(timespec="seconds")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        yield
    finally:
        with contextlib.suppress(OSError):
            path.unlink()          # while still holding it: a writer that opened the old file finds it replaced
        os.close(fd)               # closing the descriptor releases the lock
        if created:
            with contextlib.suppress(OSError):
                out.rmdir()        # only if empty: a refused or failed first run leaves no folder behind


def _acquire(path: Path, what: str) -> int:
    """An open descriptor of `path` holding its exclusive flock (OutputBusy if another process holds it)."""
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise UserError(f"{path}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise OutputBusy(f"{what}: another process is writing it ({holder}); wait for it to finish or "
                             f"stop it") from None
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)               # the holder removed the file as we locked it: lock the current one


def _holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
        return f"pid {info['pid']} on {info['host']} since {info['since']}: {info['command']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "holder unknown"


def visible(out: Path) -> list[Path]:
    """The entries of a result folder (hidden ones excluded)."""
    return sorted(p for p in out.iterdir() if not p.name.startswith(".")) if out.is_dir() else []


def _matches(entry: Path, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(entry.name, pat) for pat in patterns)


def check_own(out: Path, patterns: tuple[str, ...]) -> None:
    """Refuse an output folder that holds visible entries matching none of `patterns` (or a file where the folder
    should be): they were not written by the command, and it will not mix its results with them."""
    if not out.exists():
        return
    if not out.is_dir():
        raise UserError(f"{out}: exists and is not a folder")
    foreign = [p.name for p in visible(out) if not _matches(p, patterns)]
    if foreign:
        raise UserError(f"{out}: holds files this command did not write ({', '.join(foreign[:3])}"
                        f"{' ...' if len(foreign) > 3 else ''}); choose another output folder")


@contextlib.contextmanager
def replacing(out: str | Path, replace: tuple[str, ...]) -> Iterator[Path]:
    """Refuse a folder holding foreign files, then hold its writer lock and a staging folder whose entries replace
    the folder's entries matching `replace` when the block completes."""
    out = Path(out)
    check_own(out, replace)          # before the lock file is made: a foreign folder is not touched
    with writer_lock(out):
        check_own(out, replace)
        with build_aside(out, replace) as stage:
            yield stage


@contextlib.contextmanager
def build_aside(out: str | Path, replace: tuple[str, ...]) -> Iterator[Path]:
    """A staging folder whose entries replace `out`'s visible entries matching `replace` when the block completes.
    The caller holds `writer_lock(out)`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _recover(out)
    stage = out / f".staging-{os.getpid()}"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir()
    try:
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    replaced = out / f".replaced-{os.getpid()}"
    replaced.mkdir()
    for entry in visible(out):
        if _matches(entry, replace):
            os.replace(entry, replaced / entry.name)
    for entry in sorted(stage.iterdir()):
        os.replace(entry, out / entry.name)
    shutil.rmtree(replaced)
    stage.rmdir()


def _recover(out: Path) -> None:
    """Undo what a process killed mid-way left: staging folders are dropped; a previous set caught in a swap is put
    back when the folder holds nothing else, else dropped."""
    for stage in out.glob(".staging-*"):
        shutil.rmtree(stage, ignore_errors=True)
    for replaced in sorted(out.glob(".replaced-*")):
        if not visible(out):
            for entry in replaced.iterdir():
                os.replace(entry, out / entry.name)
        shutil.rmtree(replaced, ignore_errors=True)
