"""The acquisition thread: one per source, keeping only the newest frame.

A slow consumer never makes frames queue up: a frame nobody took before the next one
arrived is counted as dropped and released. The thread survives a camera that goes away:
it reports the loss, reopens with growing pauses (backoff) until the camera is back, and
carries on with the same frame ids. Status reaches the GUI only through `on_status`, called
on this thread with a frozen dataclass of plain values (no Qt here: the app bridges it).
"""
from __future__ import annotations

import collections
import logging
import threading
import time
from dataclasses import dataclass
from enum import Enum
from typing import Any, Callable

from engine.camera.base import EndOfStream, FrameSource, SourceLost, SourceUnavailable
from engine.errors import InspectError
from engine.types import Frame

log = logging.getLogger(__name__)


class State(str, Enum):
    IDLE = "idle"
    CONNECTING = "connecting"
    STREAMING = "streaming"
    RECONNECTING = "reconnecting"     # lost or not there yet; retrying with backoff
    FINISHED = "finished"             # a finite source is done
    FAILED = "failed"                 # a problem retrying cannot fix (file, setting); see message
    STOPPED = "stopped"


@dataclass(frozen=True)
class AcquisitionConfig:
    read_timeout_s: float = 0.2       # how long one read may wait: bounds the stop latency
    reconnect_first_s: float = 0.5
    reconnect_max_s: float = 8.0
    rate_window_s: float = 2.0        # the measured rate is over this many recent seconds
    status_every_s: float = 1.0       # counters are reported at least this often


@dataclass(frozen=True)
class AcquisitionStatus:
    source: str
    state: State
    message: str
    received: int          # frames the source delivered to this thread
    delivered: int         # frames a consumer took
    dropped: int           # frames replaced in the slot before any consumer took them
    missed: int            # frames lost before reaching the app (camera frame-counter gaps)
    rate_hz: float         # frames received per second, recently
    reconnects: int
    last_frame_id: int     # -1 before the first frame
    time: float            # time.monotonic() of this report


class Acquisition:
    """Runs `source` on its own thread. Thread-safe: start/stop/latest/status from anywhere."""

    def __init__(self, source: FrameSource,
                 on_status: Callable[[AcquisitionStatus], None] | None = None,
                 config: AcquisitionConfig = AcquisitionConfig()):
        self.source = source
        self.config = config
        self._on_status = on_status
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._slot: Frame | None = None
        self._slot_taken = True
        self._state, self._message = State.IDLE, ""
        self.received = self.delivered = self.dropped = self.reconnects = 0
        self._last_id = -1
        self._arrivals: collections.deque[float] = collections.deque()
        self._last_report = 0.0
        self._ended = False                   # the thread has left its loop for good

    # --- control -----------------------------------------------------------------------
    def start(self) -> "Acquisition":
        if self._thread is not None and self._thread.is_alive():
            return self
        self._stop.clear()
        self._ended = False
        self._thread = threading.Thread(target=self._run, name=f"acquisition {self.source.name}",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 1.0) -> bool:
        """Ask the thread to end and wait up to `timeout` s; True when it has ended."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()            # wakes a consumer blocked in wait_frame
        t = self._thread
        if t is not None:
            t.join(timeout)
            return not t.is_alive()
        return True

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def __enter__(self) -> "Acquisition":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- frames for the consumer -------------------------------------------------------
    def latest(self) -> Frame | None:
        """Take the newest frame if it has not been taken yet; never blocks."""
        with self._cond:
            return self._take()

    def wait_frame(self, timeout: float) -> Frame | None:
        """Take the next untaken frame, waiting up to `timeout` s (None on timeout or stop)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._slot_taken and not self._stop.is_set():
                left = deadline - time.monotonic()
                if left <= 0 or self._ended:
                    return None
                self._cond.wait(left)
            return self._take()

    def peek(self) -> Frame | None:
        """The newest frame whether taken or not (for redrawing a view); does not take it."""
        with self._cond:
            return self._slot

    def _take(self) -> Frame | None:
        if self._slot_taken:
            return None
        self._slot_taken = True
        self.delivered += 1
        return self._slot

    # --- settings pass straight to the source (it guards itself) ------------------------
    def settings(self) -> dict[str, Any]:
        return self.source.settings()

    def apply_settings(self, changes: dict[str, Any]) -> dict[str, Any]:
        return self.source.apply_settings(changes)

    def trigger(self) -> None:
        self.source.trigger()

    # --- status ------------------------------------------------------------------------
    def rate_hz(self) -> float:
        with self._cond:
            return self._rate(time.monotonic())

    def _rate(self, now: float) -> float:
        a = self._arrivals
        while a and a[0] < now - self.config.rate_window_s:
            a.popleft()
        if len(a) < 2 or a[-1] <= a[0]:
            return 0.0
        return (len(a) - 1) / (a[-1] - a[0])

    def status(self) -> AcquisitionStatus:
        now = time.monotonic()
        with self._cond:
            return AcquisitionStatus(
                source=self.source.name, state=self._state, message=self._message,
                received=self.received, delivered=self.delivered, dropped=self.dropped,
                missed=int(getattr(self.source, "missed_frames", 0)), rate_hz=self._rate(now),
                reconnects=self.reconnects, last_frame_id=self._last_id, time=now)

    def _report(self, state: State | None = None, message: str | None = None) -> None:
        with self._cond:
            if state is not None:
                self._state = state
            if message is not None:
                self._message = message
        self._last_report = time.monotonic()
        if self._on_status is not None:
            try:
                self._on_status(self.status())
            except Exception:      # a broken listener must not stop the camera
                log.exception("status callback failed")

    # --- the thread ----------------------------------------------------------------------
    def _publish(self, frame: Frame) -> None:
        with self._cond:
            if not self._slot_taken:
                self.dropped += 1
            self._slot, self._slot_taken = frame, False
            self.received += 1
            self._last_id = frame.id
            self._arrivals.append(frame.t)
            self._cond.notify_all()

    def _run(self) -> None:
        src, cfg = self.source, self.config
        src.on_warning = lambda text: self._report(message=text)
        backoff, connected_once = cfg.reconnect_first_s, False
        end_state, end_message = State.STOPPED, ""
        try:
            while not self._stop.is_set():
                if not src.is_open:
                    self._report(State.RECONNECTING if connected_once else State.CONNECTING,
                                 f"Opening {src.name} ...")
                    try:
                        src.open()
                    except SourceUnavailable as e:
                        src.close()
                        self._report(State.RECONNECTING, f"{e} Retrying in {backoff:.1f} s.")
                        if self._stop.wait(backoff):
                            break
                        backoff = min(backoff * 2, cfg.reconnect_max_s)
                        continue
                    if connected_once:
                        self.reconnects += 1
                    connected_once, backoff = True, cfg.reconnect_first_s
                    self._report(State.STREAMING, f"{src.name} streaming.")
                try:
                    frame = src.read(cfg.read_timeout_s)
                except SourceLost as e:
                    src.close()
                    self._report(State.RECONNECTING, f"{e} Reconnecting ...")
                    continue
                if frame is not None:
                    self._publish(frame)
                if time.monotonic() - self._last_report >= cfg.status_every_s:
                    self._report()
        except EndOfStream as e:
            end_state, end_message = State.FINISHED, str(e)
        except InspectError as e:             # a bad file or setting: retrying cannot help
            end_state, end_message = State.FAILED, str(e)
        except Exception as e:                # a bug or a driver fault: say so, stay alive
            log.exception("acquisition of %s failed", src.name)
            end_state, end_message = State.FAILED, f"{src.name} failed: {type(e).__name__}: {e}"
        finally:
            src.close()
            self._report(end_state, end_message or f"{src.name} stopped.")
            with self._cond:
                self._ended = True
                self._cond.notify_all()
