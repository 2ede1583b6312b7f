"""Worker threads yield the CPU to the GUI thread.

Training, scoring and acquisition run at a lower OS priority (Linux: per-thread nice; the
native thread pools torch starts from such a thread inherit it). On a busy 2-core PC the
GUI thread then gets the CPU first whenever it has something to draw, which is what keeps
the event loop's stalls under 100 ms. Elsewhere this is a no-op.
"""
from __future__ import annotations

import os
import sys
import threading

WORKER_NICE = 10


def background_priority(nice: int = WORKER_NICE) -> None:
    """Lower the calling thread's priority (never raises: priority is a nicety)."""
    if not sys.platform.startswith("linux") or not hasattr(os, "setpriority"):
        return
    try:
        tid = threading.get_native_id()
        current = os.getpriority(os.PRIO_PROCESS, tid)
        if current < nice:
            os.setpriority(os.PRIO_PROCESS, tid, nice)
    except OSError:
        pass


def responsive_gil() -> None:
    """Python hands the GIL between threads every 5 ms by default; 1 ms lets the GUI thread
    in sooner when the workers run Python code (the cost is a little throughput)."""
    sys.setswitchinterval(0.001)
