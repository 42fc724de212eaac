"""The evaluator's user error: `EvalError`, raised with a one-line message naming the file and the problem (a test set
folder that does not match its format, a missing image, an incomplete map store...). Every `python -m eval.*` entry
point runs its `main` through `pipeline.common.cli.run_cli`, so the user sees that line and no traceback.
"""
from __future__ import annotations

from pipeline.common.cli import UserError


class EvalError(UserError):
    """A problem the user can fix: bad input files, a bad option, an incomplete store."""

