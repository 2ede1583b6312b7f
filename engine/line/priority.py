"""Worker threads yield the CPU to the GUI thread (plain Python: the live engine and the
app's job bridge, app/tasks.py, both lower their threads' priority with it).

Training, scoring and acquisition run at a lower OS priority (Linux: per-thread nice; the
native thread pools torch starts from such a thread inherit it). On a busy 2-core PC the
GUI thread then gets the CPU first whenever it has something to draw, which is what keeps
the event loop's stalls under 100 ms. Elsewhere this is a no-op.
"""
from __future__ import annotations

import os
import sys
import threading

# Live work (acquisition, scoring) before background jobs (training, queries, exports);
# both after the GUI thread, which stays at the normal priority.
LIVE_NICE = 5
JOB_NICE = 15


def background_priority(nice: int = JOB_NICE) -> None:
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


def preload_heavy_modules() -> None:
    """Import, once on the main thread before the window opens, what workers would
    otherwise import on first use (torch's ONNX exporter, OpenVINO, the training and log
    code). An import holds the GIL for a long stretch of pure Python (PySide's import hook
    adds to it): done lazily on a worker it stalled the GUI for 100-200 ms."""
    import importlib
    for name in ("torch", "torch.onnx", "onnx", "openvino", "cv2", "engine.scoring",
                 "engine.fast", "engine.train", "engine.layout", "engine.data", "engine.log",
                 "engine.camera", "engine.camera.simulated"):
        try:
            importlib.import_module(name)
        except Exception:                 # an optional backend missing is not our problem here
            pass
