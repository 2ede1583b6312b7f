"""The ONE bridge between plain-Python engine jobs and Qt.

    tasks = Tasks(errors)                        # errors: the app's ErrorHandler
    job = tasks.run("Training", fn, on_done=..., on_progress=...)
    fn(progress, should_stop) runs on a worker thread; progress(fraction, message) and the
    result come back as Qt signals on the GUI thread; job.cancel() sets the flag it polls.

Every exception of a job goes to `ErrorHandler.report`, which writes it to the log file and
shows it in plain words; nothing a worker raises can take the app down. Long-running
threads that are not jobs (the live pipeline) use `Relay` to hand values to the GUI thread.
"""
from __future__ import annotations

import logging
import threading
import time
import traceback
from typing import Any, Callable

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal, Slot

from engine.line.priority import background_priority
from engine.errors import InspectError

log = logging.getLogger("inspect.app")


def plain_words(exc: BaseException) -> str:
    """One sentence for the user: our InspectErrors as they are, anything else named."""
    if isinstance(exc, InspectError):
        return str(exc)
    if isinstance(exc, MemoryError):
        return "The computer ran out of memory. Close other programs or use smaller images."
    if isinstance(exc, PermissionError):
        return f"No permission to use {getattr(exc, 'filename', '') or 'a file'}: {exc.strerror or exc}."
    if isinstance(exc, FileNotFoundError):
        return f"File not found: {getattr(exc, 'filename', '') or exc}."
    if isinstance(exc, OSError):
        return f"A file or device problem: {exc}."
    return f"Unexpected problem ({type(exc).__name__}: {exc}). Details are in the log file."


class ErrorHandler(QObject):
    """Where every error ends: python logging (a file in the data folder) + `shown` signal,
    which the main window connects to its status bar / dialog. Callable from any thread."""

    shown = Signal(str, str, bool)        # where ("Training", ...), message, serious

    def report(self, where: str, exc: BaseException | str, serious: bool = True) -> None:
        if isinstance(exc, BaseException):
            expected = isinstance(exc, InspectError)
            text = plain_words(exc)
            if expected:
                log.warning("%s: %s", where, text)
            else:
                log.error("%s: %s\n%s", where, text,
                          "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
        else:
            text = str(exc)
            (log.error if serious else log.info)("%s: %s", where, text)
        self.shown.emit(where, text, serious)      # queued to the GUI thread when off it

    def install_hooks(self) -> None:
        """Exceptions that escape a thread or a Qt slot land here too instead of killing the app."""
        import sys

        def thread_hook(args: threading.ExceptHookArgs) -> None:
            if args.exc_value is not None:
                self.report(f"Thread {args.thread.name if args.thread else '?'}", args.exc_value)

        def main_hook(etype, value, tb) -> None:
            if issubclass(etype, KeyboardInterrupt):
                sys.__excepthook__(etype, value, tb)
                return
            self.report("The app", value)

        threading.excepthook = thread_hook
        sys.excepthook = main_hook


class Relay(QObject):
    """A value from any thread to a callback on the GUI thread. The signal is connected to
    this object's own slot (Relay lives on the GUI thread), so Qt queues it there."""
    _value = Signal(object)

    def __init__(self, callback: Callable[[Any], None], parent: QObject | None = None):
        super().__init__(parent)
        self._callback = callback
        self._value.connect(self._deliver)

    def send(self, v: Any) -> None:       # any thread
        try:
            self._value.emit(v)
        except RuntimeError:               # the GUI side is gone (closing): drop it
            pass

    @Slot(object)
    def _deliver(self, v: Any) -> None:
        self._callback(v)


class _JobSignals(QObject):
    # Each carries the job; they are connected to slots of `Tasks` (a QObject living on the
    # GUI thread), so Qt queues them there: callbacks never run on the worker.
    progress = Signal(object, float, str)
    done = Signal(object, object)
    failed = Signal(object, object)
    finished = Signal(object)             # after done/failed/cancelled: always


class Job(QRunnable):
    """One call of fn(progress, should_stop) on the thread pool."""

    def __init__(self, name: str, fn: Callable[[Callable[[float, str], None], Callable[[], bool]], Any],
                 callbacks: dict):
        super().__init__()
        self.callbacks = callbacks
        self.setAutoDelete(False)         # the Tasks registry keeps it until it finishes
        self.name = name
        self.fn = fn
        self.signals = _JobSignals()
        self._stop = threading.Event()
        self._finished = threading.Event()
        self.started_at = 0.0
        self.cancelled = False

    def cancel(self) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._finished.wait(timeout)

    @property
    def running(self) -> bool:
        return not self._finished.is_set()

    def run(self) -> None:                 # on a pool thread
        background_priority()
        self.started_at = time.monotonic()
        try:
            result = self.fn(self._progress, self._stop.is_set)
        except BaseException as exc:       # noqa: BLE001 - every error goes to the one handler
            from engine.train import TrainingCancelled
            if isinstance(exc, TrainingCancelled) or (self._stop.is_set() and isinstance(exc, Cancelled)):
                self.cancelled = True
                log.info("%s cancelled: %s", self.name, exc)
            self._emit(self.signals.failed, self, exc)
        else:
            self._emit(self.signals.done, self, result)
        finally:
            self._finished.set()
            self._emit(self.signals.finished, self)

    def _progress(self, fraction: float, message: str) -> None:
        self._emit(self.signals.progress, self, float(fraction), str(message))

    @staticmethod
    def _emit(signal, *args) -> None:
        try:
            signal.emit(*args)
        except RuntimeError:               # the receiver is gone (app closing): nothing to tell
            pass


class Cancelled(Exception):
    """A job's own way to say it stopped because should_stop() turned true."""


class Tasks(QObject):
    """Runs jobs on a thread pool; routes each job's failure to the ErrorHandler."""

    def __init__(self, errors: ErrorHandler, max_threads: int = 4, parent: QObject | None = None):
        super().__init__(parent)
        self.errors = errors
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(max_threads)
        # Pool threads never expire: each new pool thread that runs Python gets a new thread
        # state. Two full test runs crashed (segfault) inside a pool thread's Python code; this
        # removes the thread churn as one suspect (not proven to be the cause).
        self.pool.setExpiryTimeout(-1)
        self._jobs: set[Job] = set()

    def run(self, name: str, fn, on_done: Callable[[Any], None] | None = None,
            on_progress: Callable[[float, str], None] | None = None,
            on_failed: Callable[[BaseException], None] | None = None,
            on_finished: Callable[[], None] | None = None, report: bool = True) -> Job:
        """Start fn(progress, should_stop). on_failed (if given) runs after the handler has
        reported the error (cancellations are not reported as errors). All callbacks run on
        the GUI thread."""
        job = Job(name, fn, dict(done=on_done, progress=on_progress, failed=on_failed,
                                 finished=on_finished, report=report))
        job.signals.progress.connect(self._on_progress)
        job.signals.done.connect(self._on_done)
        job.signals.failed.connect(self._on_failed)
        job.signals.finished.connect(self._on_finished)
        self._jobs.add(job)
        self.pool.start(job)
        return job

    def call(self, name: str, fn: Callable[[], Any], on_done: Callable[[Any], None] | None = None,
             on_failed: Callable[[BaseException], None] | None = None) -> Job:
        """A short job without progress (a database query, a file export)."""
        return self.run(name, lambda progress, should_stop: fn(), on_done=on_done, on_failed=on_failed)

    # ---- slots: on the GUI thread ---------------------------------------------------------
    @Slot(object, float, str)
    def _on_progress(self, job: Job, fraction: float, message: str) -> None:
        self._callback(job, "progress", fraction, message)

    @Slot(object, object)
    def _on_done(self, job: Job, result: Any) -> None:
        self._callback(job, "done", result)

    @Slot(object, object)
    def _on_failed(self, job: Job, exc: BaseException) -> None:
        if not job.cancelled and job.callbacks.get("report", True):
            self.errors.report(job.name, exc)
        self._callback(job, "failed", exc)

    @Slot(object)
    def _on_finished(self, job: Job) -> None:
        self._jobs.discard(job)
        self._callback(job, "finished")

    def _callback(self, job: Job, kind: str, *args) -> None:
        """A GUI-side callback that raises is reported, not fatal."""
        fn = job.callbacks.get(kind)
        if fn is None:
            return
        try:
            fn(*args)
        except Exception as exc:           # noqa: BLE001
            self.errors.report(job.name, exc)

    @property
    def active(self) -> list[Job]:
        return [j for j in self._jobs if j.running]

    def cancel_all(self) -> None:
        for j in list(self._jobs):
            j.cancel()

    def shutdown(self, timeout_s: float = 30.0) -> bool:
        """Cancel everything and wait for the workers (closing the app)."""
        self.cancel_all()
        return self.pool.waitForDone(int(timeout_s * 1000))
