"""Status reporting without flooding: a burst of the same trouble becomes one message
every few seconds, carrying how many times it happened."""
from __future__ import annotations

import threading
import time
from typing import Callable

from engine.log.records import LogEvent


class Throttle:
    def __init__(self, emit: Callable[[str, str, str, dict | None], None], every_s: float = 5.0):
        self._emit = emit
        self._every_s = every_s
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._counts: dict[str, int] = {}      # per kind/level, since start

    def emit(self, kind: str, level: str, message: str, count_key: str | None = None,
             every_s: float | None = None) -> None:
        now = time.monotonic()
        key = f"{kind}/{level}"     # a warning must never hold back the error that follows it
        with self._lock:
            self._counts[key] = self._counts.get(key, 0) + 1
            last = self._last.get(key)
            if last is not None and now - last < (self._every_s if every_s is None else every_s):
                return
            self._last[key] = now
            details = {count_key or "count": self._counts[key]}
        self._emit(kind, level, message, details)


def safe_call(listeners: list[Callable[[LogEvent], None]], event: LogEvent) -> None:
    """Call every listener; one that raises must not stop logging or the others."""
    for listener in list(listeners):
        try:
            listener(event)
        except Exception:       # noqa: BLE001 - a GUI slot's bug is not the log's failure
            pass
