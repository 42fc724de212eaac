"""Command-line conventions of every entry point: the user-error type, the argument parser, and `run_cli`.

A problem the user can fix (a bad option, a missing or malformed input file, an output folder written with other
settings) raises `UserError`, or the subclass its stage names, with one line naming the file or option and the
problem. `run_cli(main, argv)` is the one place that turns it into `error: <message>` on stderr and the error's exit
status (2 for bad input; 1 for a run that could not finish, such as a non-finite loss); no traceback is shown.
`Parser` reports a bad command line the same way (one line, exit status 2, no usage dump). An output that cannot be
written (no permission, read-only or full disk) is reported the same way by `run_cli`, with exit status 1.

Each `python -m ...` module defines `main(argv) -> int` that raises user errors, and ends with
`raise SystemExit(run_cli(main))`.
"""
from __future__ import annotations

import argparse
import errno
import sys
from typing import Callable, NoReturn


class UserError(Exception):
    """A problem the user can fix; its message is one line naming the file or option at fault."""

    status = 2  # exit status of the command


class Parser(argparse.ArgumentParser):
    """argparse, with a bad command line reported as `error: <message>` and exit status 2."""

    def error(self, message: str) -> NoReturn:
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(2)


# What the machine, not the code, does wrong to an output: shown as one line (exit status 1), not as a traceback.
_ENVIRONMENT_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EMFILE, errno.EIO}


def run_cli(main: Callable[[list[str] | None], int | None], argv: list[str] | None = None) -> int:
    """Run `main(argv)`; a `UserError` becomes `error: <message>` on stderr and the error's exit status, and so does
    an unwritable or full disk (`error: <file>: <reason>`, status 1)."""
    try:
        return int(main(argv) or 0)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.status
    except OSError as exc:
        if exc.errno not in _ENVIRONMENT_ERRNOS:
            raise
        print(f"error: {exc.filename or 'output'}: {exc.strerror or exc}", file=sys.stderr)
        return 1
