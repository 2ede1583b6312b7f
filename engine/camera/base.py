"""The one interface every frame source implements, and the errors it may raise.

A source is driven by exactly one thread (the acquisition thread, or a command-line loop):
open() -> read() repeatedly -> close(). Only apply_settings() / trigger() may come from
another thread, so sources that talk to hardware guard those with a lock.
"""
from __future__ import annotations

import time
from abc import ABC, abstractmethod
from typing import Any, Callable

import numpy as np

from engine.errors import InspectError
from engine.types import Frame


class SourceUnavailable(InspectError):
    """The device is absent, busy or not answering. Worth retrying: it may come back."""


class SourceLost(SourceUnavailable):
    """A source that was delivering frames stopped working (unplugged, handle gone, stalled)."""


class EndOfStream(Exception):
    """A finite source (folder or video played once) has delivered its last frame."""


def _ignore_warning(message: str) -> None:
    pass


class FrameSource(ABC):
    """Base of all sources. Subclasses set `name` and `kind` and implement the hooks below."""

    kind: str = "source"

    def __init__(self, name: str):
        self.name = name
        self._next_id = 0          # ids stay monotonic across reconnects: the object lives on
        # Called with one readable sentence about something skipped or degraded (not fatal).
        self.on_warning: Callable[[str], None] = _ignore_warning

    # --- lifecycle ---------------------------------------------------------------------
    @abstractmethod
    def open(self) -> None:
        """Acquire the device/files. InspectError (do not retry) or SourceUnavailable (retry)."""

    @abstractmethod
    def read(self, timeout: float) -> Frame | None:
        """The next frame, or None when none arrived within `timeout` seconds (not an error).

        Raises SourceLost when the device went away, EndOfStream when a finite source is done.
        Must return within about `timeout` so that a stop request is seen promptly.
        """

    @abstractmethod
    def close(self) -> None:
        """Release everything; never raises; safe to call twice or after a failed open."""

    @property
    def is_open(self) -> bool:
        return False

    # --- settings (optional) -----------------------------------------------------------
    def settings(self) -> dict[str, Any]:
        """Current settings as plain values (read back from the device where there is one)."""
        return {}

    def apply_settings(self, changes: dict[str, Any]) -> dict[str, Any]:
        """Change settings; return them as read back. InspectError names an unsupported one."""
        if changes:
            raise InspectError(f"Source {self.name} has no settings to change "
                               f"(asked for {', '.join(sorted(changes))}).")
        return self.settings()

    def trigger(self) -> None:
        """Ask for one frame now (software trigger). Only some sources support it."""
        raise InspectError(f"Source {self.name} has no software trigger.")

    # --- helpers for subclasses --------------------------------------------------------
    def _make_frame(self, rgb: np.ndarray, **extra: Any) -> Frame:
        """Stamp a frame with the next id, the arrival time and this source's name."""
        frame = Frame(id=self._next_id, t=time.monotonic(), wall_time=time.time(),
                      source=self.name, rgb=rgb, **extra)
        self._next_id += 1
        return frame

    def __enter__(self) -> "FrameSource":
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


class Pacer:
    """Spaces frames of a replayed source at a chosen rate without ever sleeping past a
    read's timeout (so a stop request is seen). rate <= 0 means as fast as possible."""

    def __init__(self, rate_hz: float):
        self.period = 1.0 / rate_hz if rate_hz and rate_hz > 0 else 0.0
        self._due = time.monotonic()

    def wait(self, timeout: float) -> bool:
        """True when the next frame is due (then schedules the following one)."""
        if self.period <= 0:
            return True
        now = time.monotonic()
        if self._due - now > timeout:
            time.sleep(max(0.0, timeout))
            return False
        if self._due > now:
            time.sleep(self._due - now)
        self._due += self.period
        # After a pause (slow consumer, breakpoint) resynchronise instead of bursting out
        # every missed frame; jitter smaller than one period is still caught up.
        self._due = max(self._due, time.monotonic() - self.period)
        return True
