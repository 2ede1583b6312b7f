"""The pipelined live loop: three stages on their own threads, one frame between any two.

    intake    (thread "scoring intake"): the newest frame from the camera, Learn capture,
              trigger gate, log guard, Scorer.prepare (checks, resize to the network input)
      -> ready:  one prepared frame; a newer one replaces it (counted as skipped), so the
                 networks always get the newest frame
    scoring   (the line's "scoring" thread): Scorer.infer only, the networks
      -> scored: one inferred frame; the scoring thread waits for room (its work is never
                 thrown away: the skipping happens before it)
    finishing (thread "scoring finish"): Scorer.finish (map at frame size, score), decide,
              overlay, InspectionRecord -> log writer, outputs.on_live, on_result, counters

The networks then run back to back while the rest (about 10 ms a frame) is done beside
them. That only pays where the networks leave a core free: on the 2-core dev PC they use
both, the rest competes with them, and `bench pipeline` measured the pipelined loop at
0.97x the serial one's parts/s (bf16 and fp32), about 17 ms later. Nothing is claimed
for a GPU until it has run there. Each stage is one thread and each hand-over holds one
frame, so verdicts come in frame order.
A frame carries the Scorer that prepared it (and that model's threshold): a model swapped
mid-flight never scores half a frame. A scorer's first inference runs alone (it may
capture a CUDA graph, which another thread's GPU work would break). An error costs the
frame it happened to (on_error, the trigger gate released), never the line.
"""
from __future__ import annotations

import collections
import dataclasses
import threading
import time
from dataclasses import dataclass
from typing import Callable

from engine.line.priority import LIVE_NICE, background_priority
from engine.types import Frame


@dataclass(frozen=True, eq=False)
class InFlight:
    """One frame on its way through the stages, with everything it is judged by."""
    frame: Frame
    scorer: object | None            # the Scorer that prepared it; None: not judged
    product: str
    threshold: float
    review: float | None
    gate: object | None              # the TriggerGate that took it (None: every frame a part)
    halted: str = ""                 # why it is not judged (the log cannot record it)
    prepared: object | None = None   # Scorer.prepare's Prepared (None: a score()-only scorer)
    small: object | None = None      # Scorer.infer's output
    whole: object | None = None      # ScoreResult of a scorer without the three stages

    @property
    def judged(self) -> bool:
        return self.scorer is not None and not self.halted

    def release(self) -> None:
        """The part is over (verdict out, dropped or failed): the PLC may send the next."""
        if self.gate is not None:
            self.gate.done(self.frame.part_id)


class Handover:
    """At most one item between two stage threads. replace=True: a newer item replaces the
    one not taken yet (put returns it); replace=False: put waits for room."""

    def __init__(self, replace: bool):
        self.replace = replace
        self._item: InFlight | None = None
        self._busy = False                   # the consumer works on the item it took
        self._closed = False
        self._cond = threading.Condition()

    def put(self, item: InFlight, consumer_alive: Callable[[], bool] = lambda: True
            ) -> InFlight | None:
        """Hand item over; returns the item it replaced, or (waiting mode) item itself when
        the consumer ended before taking it."""
        with self._cond:
            if self.replace:
                old, self._item = self._item, item
                self._cond.notify_all()
                return old
            while self._item is not None:
                if not consumer_alive():
                    return item
                self._cond.wait(0.1)
            self._item = item
            self._cond.notify_all()
            return None

    def take(self, timeout: float) -> InFlight | None:
        with self._cond:
            if self._item is None and not self._closed:
                self._cond.wait(timeout)
            item, self._item = self._item, None
            self._busy = item is not None
            self._cond.notify_all()
            return item

    def done(self) -> None:
        """The consumer is through with the item it took."""
        with self._cond:
            self._busy = False
            self._cond.notify_all()

    def wait_idle(self, alive: Callable[[], bool]) -> None:
        """Until no item waits and the consumer is not working on one (or it ended)."""
        with self._cond:
            while (self._item is not None or self._busy) and alive():
                self._cond.wait(0.05)

    def clear(self) -> InFlight | None:
        with self._cond:
            item, self._item = self._item, None
            self._cond.notify_all()
            return item

    def close(self) -> None:
        """No more items come: the consumer ends once it has taken the last one."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def full(self) -> bool:
        return self._item is not None

    @property
    def drained(self) -> bool:
        with self._cond:
            return self._closed and self._item is None


class _Recent:
    """The shortest of a stage's last few durations (s; 0 until the first) and their spread.
    The shortest, so that intake is ready early rather than late (a frame prepared too early
    waits a whole inference), and one slow frame (the first, with its warm-up) does not count."""

    def __init__(self, n: int = 5):
        self._last: collections.deque = collections.deque(maxlen=n)
        self.value = self.spread = 0.0

    def add(self, seconds: float) -> None:
        self._last.append(seconds)
        self.value, self.spread = min(self._last), max(self._last) - min(self._last)

    @property
    def settled(self) -> bool:
        return len(self._last) >= 3


class StagedLoop:
    """One run of the pipelined loop (from the line's start to its stop) for a Pipeline,
    whose helpers (model swap, capture, log guard, verdict, publication) it calls."""

    # Intake wakes this much before the networks are expected to be free, plus the recent
    # inferences' spread: one that ends sooner would wait for intake.
    PACE_MARGIN_S = 0.004

    def __init__(self, pipe):
        self.pipe = pipe
        self.ready = Handover(replace=True)
        self.scored = Handover(replace=False)
        self.prepare_s, self.infer_s = _Recent(), _Recent()
        self._infer_started: float | None = None
        self._tried: set[int] = set()           # ids of the scorers that have inferred once
        self._end = threading.Event()

    # ---- the run, on the line's scoring thread ------------------------------------------
    def run(self) -> None:
        """Start intake and finishing, infer until the line stops, then end both: the frame
        prepared but not inferred is dropped (skipped), every inferred one is finished."""
        intake = threading.Thread(target=self._stage, args=(self._intake_loop,),
                                  name="scoring intake", daemon=True)
        finish = threading.Thread(target=self._stage, args=(self._finish_loop,),
                                  name="scoring finish", daemon=True)
        self._finish_thread = finish
        intake.start()
        finish.start()
        try:
            self._score_loop()
        finally:
            self._end.set()
            intake.join()
            left = self.ready.clear()
            if left is not None:
                self._skip(left)
            self.scored.close()
            finish.join()

    def _stopping(self) -> bool:
        return self._end.is_set() or self.pipe._stop.is_set()

    def _stage(self, loop: Callable[[], None]) -> None:
        background_priority(LIVE_NICE)
        loop()

    def _fault(self, item: InFlight | None, exc: BaseException) -> None:
        """One frame lost to an error: said, its part released, and a pause, so that a
        persistent fault does not flood the log."""
        if item is not None:
            item.release()
        self.pipe.on_error("Scoring", exc)
        time.sleep(0.2)

    def _skip(self, item: InFlight) -> None:
        self.pipe.skipped += 1
        item.release()

    # ---- intake -------------------------------------------------------------------------
    def _intake_loop(self) -> None:
        pipe = self.pipe
        while not self._stopping():
            item = None
            try:
                pipe._apply_pending()           # a model swap: between frames, here
                self._pace()
                frame = pipe.feed.next_frame(0.2)
                if frame is None:
                    continue
                pipe._feed_capture(frame)
                if self._too_early() > 0:       # the networks took a frame meanwhile
                    pipe.skipped += 1
                    continue
                item = self._admit(frame)
                if item is None:
                    continue
                item = self._prepare(item)
                old = self.ready.put(item)
                handed, item = item, None       # the scoring thread's now
                if old is not None:
                    self._skip(old)
                self._wait_first_inference(handed)
            except Exception as exc:           # noqa: BLE001 - one bad frame must not stop the line
                self._fault(item, exc)

    def _admit(self, frame: Frame) -> InFlight | None:
        """The trigger gate (is it a part, which id) and what it will be judged by."""
        pipe = self.pipe
        gate = pipe.trigger
        if gate is not None:
            frame = gate.take(frame)
            if frame is None:                  # PLC trigger mode and no trigger pending
                return None
        try:
            scorer, spec = pipe._scorer, pipe._spec
            with pipe._lock:
                threshold, review = pipe._threshold, pipe._review
            halted = pipe._halt_reason() if scorer is not None else ""
        except BaseException:
            if gate is not None:
                gate.done(frame.part_id)
            raise
        return InFlight(frame, scorer, spec.product if spec else "", threshold, review, gate,
                        halted)

    def _prepare(self, item: InFlight) -> InFlight:
        if not item.judged or not hasattr(item.scorer, "prepare"):
            return item
        t0 = time.perf_counter()
        prepared = item.scorer.prepare([item.frame.rgb])      # an error: _fault releases it
        self.prepare_s.add(time.perf_counter() - t0)
        return dataclasses.replace(item, prepared=prepared)

    def _wait_first_inference(self, item: InFlight) -> None:
        """A scorer's first inference runs alone: it may capture a CUDA graph (the GPU's
        default path), which fails when another thread uses the GPU meanwhile."""
        if not item.judged:
            return
        while id(item.scorer) not in self._tried and not self._stopping():
            time.sleep(0.005)

    def _pace(self) -> None:
        """While the networks are busy, wait until they are about to finish before taking
        the next frame: preparing camera frames only to replace them takes CPU from the
        networks, which on the 2-core PC use both cores (at 100 frames/s about a sixth of a
        core). The camera's own slot meanwhile keeps the newest frame. With an empty slot
        only once the inference time is known (else a frame is kept ready at once). Not
        while Learn captures: it gets every frame the intake can take."""
        while not self._stopping():
            left = self._too_early()
            if left <= 0:
                return
            time.sleep(min(left, 0.02))

    def _too_early(self) -> float:
        """Seconds until intake should take the next frame; 0 when now: shortly before the
        networks are expected to be free (then every newer frame, until they are)."""
        est, started = self.infer_s, self._infer_started
        if started is None or self.pipe._capture is not None or not (self.ready.full or est.settled):
            return 0.0
        early = min(est.spread, 0.25 * est.value) + self.PACE_MARGIN_S + self.prepare_s.value
        return max(0.0, started + est.value - early - time.monotonic())

    # ---- scoring: the networks only -----------------------------------------------------
    def _score_loop(self) -> None:
        while not self._stopping():
            item = self.ready.take(0.2)
            if item is None:
                continue
            try:
                item = self._infer(item)
            except Exception as exc:           # noqa: BLE001 - one bad frame must not stop the line
                self._fault(item, exc)
                continue
            if self.scored.put(item, self._finish_thread.is_alive) is not None:
                item.release()                 # finishing ended (cannot happen while running)

    def _infer(self, item: InFlight) -> InFlight:
        if not item.judged:
            return item
        if id(item.scorer) not in self._tried:  # its first: alone (_wait_first_inference)
            self.scored.wait_idle(self._finish_thread.is_alive)
        t0 = time.perf_counter()
        self._infer_started = time.monotonic()
        try:
            if item.prepared is None:          # a scorer with score() only: whole, here
                return dataclasses.replace(item, whole=item.scorer.score([item.frame.rgb]))
            return dataclasses.replace(item, small=item.scorer.infer(item.prepared))
        finally:
            self._infer_started = None
            self._tried.add(id(item.scorer))
            self.infer_s.add(time.perf_counter() - t0)

    # ---- finishing ----------------------------------------------------------------------
    def _finish_loop(self) -> None:
        while not self.scored.drained:
            item = self.scored.take(0.2)
            if item is None:
                continue
            try:
                self._finish(item)
            except Exception as exc:           # noqa: BLE001 - one bad frame must not stop the line
                self._fault(item, exc)
            else:
                item.release()
            finally:
                self.scored.done()

    def _finish(self, item: InFlight) -> None:
        pipe = self.pipe
        frame, halted = item.frame, item.halted
        verdict, shown, logged = None, frame.rgb, False
        if item.judged and pipe.log_guard is not None:
            halted = pipe.log_guard() or ""    # the log may have failed since intake
        if item.judged and not halted:
            result = item.whole if item.whole is not None else \
                item.scorer.finish(item.prepared, item.small)
            verdict, shown, logged = pipe._conclude(frame, item.scorer.model_id, result,
                                                    item.threshold, item.review, item.product)
        pipe._publish(frame, item.product, verdict, shown, logged, halted)
