"""Errors the user should read: one clear sentence saying what is wrong and what to do."""
from __future__ import annotations

import sys
from typing import Callable


class InspectError(Exception):
    """A problem with the user's input, files or setup (not a bug). The message is shown as is."""


def run_command(fn: Callable[..., int | None], *args) -> int:
    """The exit status of a command-line entry point: its own, 2 after printing an
    InspectError as "error: ...", 130 for a stopped training (its resume file is kept).
    The one wrapper every command and bench uses, so they all answer alike."""
    try:
        return int(fn(*args) or 0)
    except InspectError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Exception as e:
        if not _training_cancelled(e):
            raise
        print(f"stopped: {e}; run the same command again to resume", file=sys.stderr)
        return 130


def _training_cancelled(exc: Exception) -> bool:
    # engine.train imports torch: a command that never loaded it (cameras, grab) cannot have
    # raised its TrainingCancelled, and must not pay for the import to find that out.
    train = sys.modules.get("engine.train")
    return train is not None and isinstance(exc, train.TrainingCancelled)
