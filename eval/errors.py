"""The evaluator's user error: `EvalError`, raised with a one-line message naming the file and the problem (a test set
folder that does not match its format, a missing image, an incomplete map store...). Every `python -m eval.*` entry
point runs its `main` through `pipeline.common.cli.run_cli`, so the user sees that line and no traceback.
`check_replaceable` guards the output folders that a command replaces as a whole.
"""
from __future__ import annotations

from pathlib import Path

from pipeline.common.cli import UserError


class EvalError(UserError):
    """A problem the user can fix: bad input files, a bad option, an incomplete store."""


def check_replaceable(out: Path, patterns: tuple[str, ...]) -> None:
    """Refuse to replace the files of an output folder that holds anything its command did not write (visible names
    matching none of `patterns`, or a file where the folder should be): replacing would delete the user's own files."""
    if not out.exists():
        return
    if not out.is_dir():
        raise EvalError(f"{out}: exists and is not a folder")
    foreign = sorted(p.name for p in out.iterdir()
                     if not p.name.startswith(".") and not any(p.match(pat) for pat in patterns))
    if foreign:
        raise EvalError(f"{out}: holds files this command did not write ({', '.join(foreign[:3])}"
                        f"{' ...' if len(foreign) > 3 else ''}); choose another output folder")
