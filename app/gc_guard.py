"""Python's cyclic garbage collection, run on the GUI thread only.

CPython collects cycles in whichever thread happens to allocate when a generation's counter
trips. If that is a worker thread (the log opening, a model loading) and the cycle holds a
Qt wrapper (a closed dialog or window whose signals point back at it), Qt destroys that
object off the GUI thread and the process dies with a segmentation fault. Two full test runs
died so, each time with "Garbage-collecting" on top of a worker thread's stack.

So while the GUI runs, automatic collection is off and a timer on the GUI thread does the
same generational collections whenever the counters say they are due. Worker threads still
allocate and free as usual (reference counting); only cycles wait up to one tick.
"""
from __future__ import annotations

import gc

from PySide6.QtCore import QObject, QTimer
from PySide6.QtWidgets import QApplication

TICK_MS = 250


class GuiThreadCollector(QObject):
    def __init__(self, parent: QObject):
        super().__init__(parent)
        self.thresholds = gc.get_threshold() or (700, 10, 10)
        gc.disable()
        self.timer = QTimer(self)
        self.timer.timeout.connect(self.collect_due)
        self.timer.start(TICK_MS)

    def collect_due(self) -> int:
        """The collections automatic GC would have made by now; -> objects found unreachable."""
        counts = gc.get_count()                          # (gen0 allocations, gen1, gen2)
        t0, t1, t2 = (max(1, int(t)) for t in self.thresholds[:3])
        if counts[2] >= t2:
            return gc.collect(2)
        if counts[1] >= t1:
            return gc.collect(1)
        if counts[0] >= t0:
            return gc.collect(0)
        return 0


def install() -> GuiThreadCollector | None:
    """Once per QApplication (idempotent); None when there is no QApplication yet."""
    app = QApplication.instance()
    if app is None:
        return None
    found = app.findChild(GuiThreadCollector)
    return found if found is not None else GuiThreadCollector(app)
