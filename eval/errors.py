"""The evaluator's user-error exception and the one place that turns it into `error: ...` on stderr, exit status 2.

Raise `EvalError` with a one-line message naming the file and the problem (a test set folder that does not match its
format, a missing image, an incomplete map store...); every `python -m eval.*` entry point wraps its `main` with
`run_cli` so the user sees that line and no traceback.
"""
from __future__ import annotations

import sys
from typing import Callable

from pipeline.configio import ConfigError


class EvalError(Exception):
    """A problem the user can fix: bad input files, a bad option, an incomplete store."""


def run_cli(main: Callable[[list[str] | None], int | None], argv: list[str] | None = None) -> int:
    """Run `main(argv)`; user errors become `error: <message>` on stderr and exit status 2."""
    try:
        return int(main(argv) or 0)
    except (EvalError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
