"""The live path of a frame, all plain Python on threads (no Qt here):

    camera feed (engine/line/feed.py: the engine/camera acquisition thread, latest-frame slot)
      -> pipelined (the default on a GPU; engine/line/stages.py): intake (newest frame, capture, trigger
         gate, log guard, Scorer.prepare) -> the scoring thread (Scorer.infer, the networks
         only) -> finishing (Scorer.finish, decide -> Verdict, overlay, InspectionRecord to
         the log writer, outputs, on_result); one frame between any two stages
      -> or serial (the default on the CPU): the scoring thread does all of it per frame: the
         newest frame, log guard, Scorer.score, decide, overlay, log submission (never blocks).
         On the 2-core dev CPU the networks already keep both cores busy, so the ~10 ms of
         other work per frame only competes with them: `bench pipeline` measured the
         pipelined loop at 0.94-1.00x the serial one's parts/s and 7-17 ms later per verdict
         (bf16, int8, fp32). On a GPU that work runs beside the networks.
      -> on_result(LiveResult): a client (the GUI wraps it in tasks.Relay) only draws it.

The line also serves the Learn flow (captures the next N frames) and swaps models between
frames when the product changes. Errors go to on_error(where, exc): the
thread keeps running (a scoring error costs one frame, not the line). start() and stop()
never wait: the scoring thread starts and stops the camera itself, and a start that comes
while a stop is under way is taken up by the scoring thread when the camera has stopped.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from engine.errors import InspectError
from engine.line.priority import LIVE_NICE, background_priority
from engine.line.values import LiveResult, ModelSpec, ModelStatus
from engine.types import Decision, Frame, Verdict, decide

log = logging.getLogger("inspect.pipeline")


@dataclass
class _Capture:
    n: int
    frames: list = field(default_factory=list)
    done: Callable[[list[Frame]], None] | None = None
    event: threading.Event = field(default_factory=threading.Event)


class Pipeline:
    def __init__(self, feed, station: str, device: str = "auto", backend: str = "auto",
                 on_result: Callable[[LiveResult], None] = lambda r: None,
                 on_model: Callable[[ModelStatus], None] = lambda status: None,
                 on_error: Callable[[str, BaseException], None] = lambda where, e: None,
                 log_submit: Callable | None = None,
                 log_guard: Callable[[], str | None] | None = None,
                 pipelined: bool | None = None):
        self.feed = feed                       # start(), stop(), next_frame(timeout), rate_hz()
        self.station = station
        self.device = device
        self.backend = backend
        self.on_result = on_result
        self.on_model = on_model              # ModelStatus, once per model change
        self.on_error = on_error
        self.log_submit = log_submit           # InspectionRecord -> bool; None: not logging
        # () -> why verdicts cannot be recorded now, or None. With a guard no part is judged
        # that the log would not record: the camera runs on (Learn), judging stops.
        self.log_guard = log_guard
        self.halted = ""
        # the three-stage loop (engine/line/stages.py), or everything on the scoring thread;
        # read at each start. None: by device (see the module text)
        self.pipelined = pipelined
        # engine.line.trigger.TriggerGate: which frames are parts, with their ids (None:
        # every frame, no id); engine.outputs.LineOutputs: the PLC's view of each verdict.
        self.trigger = None
        self.outputs = None
        self.overlay_on = True
        self.opacity = 0.5
        self._spec: ModelSpec | None = None
        self._pending_spec: ModelSpec | None = None
        self._scorer = None
        self._threshold = 0.5
        self._review: float | None = None
        self._capture: _Capture | None = None
        self._lock = threading.Lock()
        self._loading = threading.Lock()      # held while a model is loaded (see _apply_pending)
        # start/stop and the scoring thread's decision to end: one lock, so that a start
        # during a stop is never lost and never waits (see _run).
        self._ctl = threading.Lock()
        self._wanted = False
        self._stop = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._thread: threading.Thread | None = None
        self.parts = self.fails = self.reviews = 0
        self.skipped = 0                       # frames taken, then replaced by a newer one

    # ---- control (any thread; none of these waits) --------------------------------------
    def start(self) -> None:
        """Start scoring; the scoring thread starts the camera. While a stop is under way
        the scoring thread starts over by itself once the camera has stopped."""
        with self._ctl:
            self._wanted = True
            if self._thread is not None:
                return                          # running, or stopping and will start over
            self._stop.clear()
            self._idle.clear()
            self._thread = threading.Thread(target=self._run, name="scoring", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Ask scoring and acquisition to stop; returns at once (the scoring thread stops
        the camera as it ends). Every verdict made so far is already with the log writer."""
        with self._ctl:
            self._wanted = False
            self._stop.set()
        with self._lock:
            cap, self._capture = self._capture, None
        if cap is not None:
            cap.event.set()

    def join(self, timeout: float) -> bool:
        """Wait until the scoring thread and the camera have stopped; True when they have.
        For closing the app and for tests, never for a button."""
        return self._idle.wait(timeout)

    @property
    def running(self) -> bool:
        """The scoring thread is there (it may be stopping)."""
        return self._thread is not None

    @property
    def requested(self) -> bool:
        """Started and not asked to stop since."""
        return self._wanted

    @property
    def stopping(self) -> bool:
        return self.running and not self._wanted

    def set_model(self, spec: ModelSpec) -> None:
        """Swap models between frames: the scoring thread loads the file, or, while it is
        not running, a loader thread (loading never happens on the caller's thread)."""
        with self._lock:
            self._pending_spec = spec
        if not self.running:
            threading.Thread(target=self._load_in_background, name="model loader",
                             daemon=True).start()

    def wait_model(self, timeout: float) -> bool:
        """Wait until no model is pending or loading; True when so. For tests and benches."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                if self._pending_spec is None and not self._loading.locked():
                    return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)

    def _load_in_background(self) -> None:
        background_priority(LIVE_NICE)
        try:
            self._apply_pending()
        except Exception as exc:              # noqa: BLE001 - a listener's fault: say it
            self.on_error("Model", exc)

    def set_threshold(self, threshold: float, review_below: float | None) -> None:
        with self._lock:
            self._threshold = float(threshold)
            self._review = None if review_below is None else float(review_below)

    def set_overlay(self, on: bool, opacity: float) -> None:
        self.overlay_on, self.opacity = bool(on), float(opacity)

    def capture(self, n: int, done: Callable[[list[Frame]], None]) -> None:
        """Hand the next n frames to done(frames) (on the scoring thread)."""
        with self._lock:
            self._capture = _Capture(n=n, done=done)

    def cancel_capture(self) -> None:
        with self._lock:
            self._capture = None

    def reset_counters(self) -> None:
        self.parts = self.fails = self.reviews = 0
        self.skipped = 0

    @property
    def spec(self) -> ModelSpec | None:
        return self._spec

    @property
    def has_model(self) -> bool:
        return self._scorer is not None

    # ---- the scoring thread ------------------------------------------------------------
    def _run(self) -> None:
        background_priority(LIVE_NICE)
        again = True
        while again:
            try:
                self._serve()
            except Exception as exc:           # noqa: BLE001 - e.g. a source that cannot be built
                self.on_error("Camera", exc)
                with self._ctl:
                    self._wanted = False       # the line stops, the reason is shown
            finally:
                again = self._end_or_again()
        self._apply_pending()                  # a model chosen while stopping is not lost

    def _end_or_again(self) -> bool:
        """The camera has stopped: start over if a start came meanwhile, else end."""
        with self._ctl:
            if self._wanted:
                self._stop.clear()
                return True
            self._thread = None
            self._idle.set()
            return False

    def _serve(self) -> None:
        # Started here, not on the GUI thread: the acquisition thread inherits this
        # thread's lower priority, so neither competes with the GUI for the CPU.
        self.feed.start()
        try:
            if self._use_stages():
                from engine.line.stages import StagedLoop
                StagedLoop(self).run()         # returns once every stage thread has ended
            else:
                self._serve_serially()
        finally:
            self.feed.stop()

    def _use_stages(self) -> bool:
        if self.pipelined is not None:
            return bool(self.pipelined)
        from engine.device import resolve_device
        try:
            return resolve_device(self.device).type == "cuda"
        except Exception:                   # noqa: BLE001 - a bad device is the scorer's to say
            return False

    def _serve_serially(self) -> None:
        """The single-thread loop: per frame, everything on the scoring thread."""
        while not self._stop.is_set():
            try:
                self._apply_pending()
                frame = self.feed.next_frame(0.2)
                if frame is None:
                    continue
                self._feed_capture(frame)
                self._part(frame)
            except Exception as exc:           # noqa: BLE001 - one bad frame must not stop the line
                self.on_error("Scoring", exc)
                time.sleep(0.2)                # a persistent fault must not flood the log

    def _apply_pending(self) -> None:
        """Load the pending model. One load at a time, so that the scoring thread waits
        for a load under way (no frame is shown NO MODEL meanwhile) and the last model
        chosen is the one that stays."""
        with self._loading:
            with self._lock:
                spec, self._pending_spec = self._pending_spec, None
            if spec is not None:
                self._load(spec)

    def _load(self, spec: ModelSpec) -> None:
        """A file that cannot be used never raises here: the product goes to "no model"
        with the reason in ModelStatus.error, and the error goes to on_error."""
        self._scorer, self._spec = None, spec
        if spec.path is None:
            self.on_model(ModelStatus(product=spec.product))
            return
        from engine.scoring import Scorer
        try:
            if not Path(spec.path).is_file():
                raise InspectError(f"The model file for {spec.product!r} is missing ({spec.path}). "
                                   "Click Learn good parts to train it again.")
            scorer = Scorer.from_file(spec.path, device=self.device, backend=self.backend)
            meta = scorer.info
        except Exception as exc:      # noqa: BLE001 - any bad file: no model, told why
            self._model_failed(spec, exc)
            return
        self.set_threshold(spec.threshold if spec.threshold is not None else scorer.threshold,
                           spec.review_below)
        self._scorer = scorer
        self.on_model(ModelStatus(product=spec.product, model_id=scorer.model_id,
                                  threshold=scorer.threshold, meta=meta))

    def _model_failed(self, spec: ModelSpec, exc: Exception) -> None:
        if isinstance(exc, InspectError):
            todo = "" if "Learn good parts" in str(exc) else " Click Learn good parts to train a new one."
            err: Exception = InspectError(f"Cannot use the model of {spec.product!r}: {exc}{todo}")
            why = str(err)
        else:                         # a bug: the handler logs its traceback
            err, why = exc, (f"Cannot use the model of {spec.product!r}: unexpected problem "
                             f"({type(exc).__name__}: {exc}); details are in the log file.")
        self.on_model(ModelStatus(product=spec.product, error=why))
        self.on_error("Model", err)

    def _feed_capture(self, frame: Frame) -> None:
        with self._lock:
            cap = self._capture
            if cap is None:
                return
            cap.frames.append(frame)
            if len(cap.frames) < cap.n:
                return
            self._capture = None
        cap.event.set()
        if cap.done is not None:
            cap.done(list(cap.frames))

    def _part(self, frame: Frame) -> None:
        """The trigger gate says whether the frame is a part and tags it with its id."""
        gate = self.trigger
        if gate is None:
            self._handle(frame)
            return
        frame = gate.take(frame)
        if frame is None:                      # PLC trigger mode and no trigger pending
            return
        try:
            self._handle(frame)
        finally:
            gate.done(frame.part_id)

    def _handle(self, frame: Frame) -> None:
        scorer, spec = self._scorer, self._spec
        product = spec.product if spec else ""
        verdict, shown, logged = None, frame.rgb, False
        halted = self._halt_reason() if scorer is not None else ""
        if scorer is not None and not halted:
            verdict, shown, logged = self._judge(frame, scorer, product)
        self._publish(frame, product, verdict, shown, logged, halted)

    def _publish(self, frame: Frame, product: str, verdict: Verdict | None, shown: np.ndarray,
                 logged: bool, halted: str) -> None:
        result = LiveResult(frame=frame, verdict=verdict, shown=shown, product=product,
                            camera_fps=self._camera_rate(),
                            parts=self.parts, fails=self.fails, reviews=self.reviews,
                            logged=logged, halted=halted)
        if self.outputs is not None:           # the PLC first: it waits for the verdict
            self.outputs.on_live(result)
        self.on_result(result)

    def _halt_reason(self) -> str:
        """Asked before each part; said once when judging stops, logged when it resumes."""
        why = (self.log_guard() or "") if self.log_guard is not None else ""
        if why != self.halted:
            if why:
                self.on_error("Inspection stopped", InspectError(why))
            else:
                log.info("inspection resumed: the log records verdicts again")
            self.halted = why
        return why

    def _judge(self, frame: Frame, scorer, product: str) -> tuple[Verdict, np.ndarray, bool]:
        with self._lock:
            threshold, review = self._threshold, self._review
        result = scorer.score([frame.rgb])
        return self._conclude(frame, scorer.model_id, result, threshold, review, product)

    def _conclude(self, frame: Frame, model_id: str, result, threshold: float,
                  review: float | None, product: str) -> tuple[Verdict, np.ndarray, bool]:
        """A ScoreResult of one frame -> verdict, counters, overlay, log submission."""
        score, amap = float(result.scores[0]), result.maps[0]
        decision = decide(score, threshold, review)
        verdict = Verdict(frame_id=frame.id, score=score, decision=decision,
                          threshold=threshold, anomaly_map=amap, model_id=model_id,
                          latency_ms=result.latency_ms, part_id=frame.part_id)
        self.parts += 1
        self.fails += decision == Decision.FAIL
        self.reviews += decision == Decision.REVIEW
        from engine.scoring import overlay
        ov, shown = None, frame.rgb
        if decision != Decision.PASS or self.overlay_on:
            ov = overlay(frame.rgb, amap, threshold, self.opacity if self.overlay_on else 0.5)
        if self.overlay_on:
            shown = ov
        logged = self._log(frame, verdict, product, ov if decision != Decision.PASS else None)
        return verdict, shown, logged

    def _camera_rate(self) -> float:
        """Frames the camera delivers per second: the acquisition measures it (the one
        rate measurement of the line)."""
        return float(self.feed.rate_hz()) if self.feed is not None else 0.0

    def _log(self, frame: Frame, verdict: Verdict, product: str, ov) -> bool:
        if self.log_submit is None:
            return False
        from engine.log import InspectionRecord
        return bool(self.log_submit(InspectionRecord.from_frame(
            frame, verdict, station=self.station, product=product, overlay=ov,
            part_id=frame.part_id)))
