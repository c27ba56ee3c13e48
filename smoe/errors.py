"""The one exception type the CLI turns into a one-line message and exit code 2, and the one way a
command ends on Ctrl-C."""

from __future__ import annotations

import sys
from typing import NoReturn

INTERRUPTED_EXIT = 130  # 128 + SIGINT, what a shell reports for a command stopped by Ctrl-C


class UserError(Exception):
    """Bad input from the user: a config key, a value, a path. The message names the field and the fix."""


def require(ok: bool, key: str, message: str) -> None:
    """UserError "key: message" unless ok."""
    if not ok:
        raise UserError(f"{key}: {message}")


def report_interrupt(resume_command: str, kept: str = "") -> int:
    """One line instead of a KeyboardInterrupt traceback; returns the exit code."""
    print(f"smoe: interrupted; resume with: {resume_command}{f' ({kept})' if kept else ''}", file=sys.stderr)
    return INTERRUPTED_EXIT


def interrupted(resume_command: str, kept: str = "") -> NoReturn:
    """Ends the command on Ctrl-C; everything committed so far is kept."""
    raise SystemExit(report_interrupt(resume_command, kept))
