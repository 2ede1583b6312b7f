"""LineOutputs: the station's one set of outputs (one per process), between the live engine
and the PLC.

    scoring thread: Pipeline -> on_live(LiveResult)  (never waits: a hand-over to the loop)
    outputs' loop:  one writer task, in order: result fields, sequence, result-valid pulse,
                    state Ready/Busy/Error, to every output (OPC UA, Modbus TCP)
    PLC -> output -> request_trigger / request_product (on the loop) -> TriggerGate, the
                    client's switch_product

A triggered part that has no verdict within timeout_ms gets the safe answer (FAIL unless
configured REVIEW) on every output, a row in the inspection log and a counted problem.
Bad input from the line (a trigger while busy, an unknown product number, a bad address,
a client gone mid-subscription, a port in use) is one sentence, counted by kind; the
station keeps its safe state and the log loses nothing.
"""
from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time
from typing import Callable

from engine.errors import InspectError
from engine.line.trigger import TriggerGate
from engine.outputs.aio import LoopThread
from engine.outputs.base import ResultOutput
from engine.outputs.values import LineProblem, LineResult, LineState, OutputsConfig, OutputView

log = logging.getLogger("inspect.outputs")


def build_outputs(config: OutputsConfig, station: str, cert_dir, feed=None) -> list[ResultOutput]:
    """The outputs the configuration asks for (each imports its library only when used);
    feed: the CameraFeed whose GenICam camera drives config.camera_line."""
    outs: list[ResultOutput] = []
    if config.opcua:
        from engine.outputs.opcua_server import OpcUaOutput
        outs.append(OpcUaOutput(config, station, cert_dir))
    if config.modbus:
        from engine.outputs.modbus_server import ModbusOutput
        outs.append(ModbusOutput(config))
    if config.camera_line:
        from engine.outputs.camera_line import CameraLineOutput, nodes_of_feed
        outs.append(CameraLineOutput(nodes_of_feed(feed), config.camera_line,
                                     config.camera_user_output))
    if config.mqtt_url:
        from engine.outputs.mqtt_output import MqttOutput
        outs.append(MqttOutput(config.mqtt_url, config.mqtt_topic or f"inspect/{station}",
                               config.mqtt_user, config.mqtt_password))
    return outs


class LineOutputs:
    def __init__(self, config: OutputsConfig, gate: TriggerGate, outputs: list[ResultOutput],
                 switch_product: Callable[[str], str] = lambda name: "",
                 on_problem: Callable[[LineProblem], None] = lambda p: None,
                 on_error: Callable[[str, BaseException], None] = lambda where, e: None):
        self.config = config
        self.gate = gate
        self.outputs = outputs
        # name -> "" when switched, else why not. Called on the outputs' loop: it must only
        # hand the switch over (the GUI relays it to its thread; the runner sets the model).
        self.switch_product = switch_product
        self.on_problem = on_problem
        self.on_error = on_error
        self.pipeline = None
        self.loop = LoopThread()
        # Made here (bound to the loop at first use): what is said before the outputs are
        # open waits in it, in order, for the writer.
        self._queue: asyncio.Queue = asyncio.Queue()
        self._counts: collections.Counter = collections.Counter()
        self._clock = threading.Lock()
        self._problems: collections.deque = collections.deque(maxlen=20)
        self._said: dict[str, float] = {}
        self._seq = 0
        self._state = LineState("ready")
        self._product_error = ""
        self._model_error = ""
        self._stopped_error = ""
        self._halt = ""
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._timed_out: collections.deque = collections.deque(maxlen=100)
        self._pulse: asyncio.TimerHandle | None = None
        self._opened = threading.Event()
        self.last: LineResult | None = None
        self.recent: collections.deque = collections.deque(maxlen=200)   # for the REST API
        gate.on_taken = self._taken

    # ---- life (any thread; start/stop never wait on the network) -------------------------
    def attach(self, pipeline) -> None:
        """The live engine's verdicts go to these outputs, its frames through the gate."""
        self.pipeline = pipeline
        pipeline.trigger = self.gate
        pipeline.outputs = self
        # No part is triggered before the model is there: Error until it is loaded.
        self._model_error = "the model is loading"
        self._state = LineState("error", self._model_error)
        self.loop.call(self._enqueue, ("state", None))     # outputs open already: say it
        # The client's own listener, kept once: outputs opened again do not stack up.
        told = getattr(pipeline, "_client_on_model", None) or pipeline.on_model
        pipeline._client_on_model = told

        def on_model(status) -> None:          # on the scoring / loader thread
            self.loop.call(self._enqueue, ("model", status))
            told(status)
        pipeline.on_model = on_model

    def start(self) -> None:
        """Open every output on the outputs' thread; a port in use is said (on_error) and
        counted, the other outputs and the line run on."""
        self.loop.start()
        self.loop.call(lambda: asyncio.ensure_future(self._open_all()))

    def wait_open(self, timeout: float) -> bool:
        """True once every output tried to open (for the runner, tests, benches)."""
        return self._opened.wait(timeout)

    def stop(self, timeout: float = 5.0) -> None:
        if self.loop.loop is None:
            return
        try:
            self.loop.submit(self._close_all()).result(timeout)
        except Exception as exc:             # noqa: BLE001 - closing: say it, go on
            log.warning("the line outputs did not close cleanly: %s", exc)
        self.loop.stop(timeout)

    async def _open_all(self) -> None:
        for out in self.outputs:
            try:
                await out.open(self)
                out.running, out.error = True, ""
                await out.write_state(self._state)
            except InspectError as exc:
                out.error = str(exc)
                self.problem("port", str(exc))
                self.on_error(out.name, exc)
            except Exception as exc:         # noqa: BLE001 - a bug: the handler logs it
                out.error = f"{out.name} could not start ({type(exc).__name__}: {exc})."
                self.problem("output", out.error)
                self.on_error(out.name, exc)
        asyncio.ensure_future(self._writer())
        self._opened.set()

    async def _close_all(self) -> None:
        for out in self.outputs:
            if out.running:
                try:
                    await out.close()
                except Exception as exc:     # noqa: BLE001 - closing: say it, go on
                    log.warning("%s did not close cleanly: %s", out.name, exc)
                out.running = False

    # ---- from the scoring thread (never waits) -------------------------------------------
    def on_live(self, result) -> None:
        """A LiveResult: a verdict is published; a triggered part that was not judged (no
        model, the log cannot record) gets the safe answer with the reason."""
        v = result.verdict
        self.gate.done(result.part_id)        # the PLC may trigger the next part at once
        if v is not None:
            item = LineResult(0, result.part_id or "", v.decision.value, float(v.score),
                              float(v.threshold), v.model_id, result.product,
                              result.frame.wall_time, result.parts, result.fails,
                              result.reviews, v.reason, time.perf_counter())
            self.loop.call(self._enqueue, ("result", item))
            return
        why = result.halted or f"no model for product {result.product!r}"
        if self.gate.mode == "plc" and result.part_id:
            self.loop.call(self._enqueue, ("safe", (result.part_id, why, result)))
        self.loop.call(self._enqueue, ("halt", why))

    def _taken(self, part_id: str) -> None:           # scoring thread: a part is being judged
        self.loop.call(self._enqueue, ("busy", part_id))

    def line_running(self, running: bool) -> None:
        """The line was started or stopped (any thread): stopped is Error with the reason,
        so that the PLC sends no part to a station that does not judge."""
        self.loop.call(self._enqueue, ("running", bool(running)))

    def set_product(self, name: str) -> None:
        """The product the line judges now (any thread)."""
        self.loop.call(self._enqueue, ("product", name))

    # ---- on the loop: the one writer, in order -------------------------------------------
    def _enqueue(self, item) -> None:
        self._queue.put_nowait(item)

    async def _writer(self) -> None:
        while True:
            kind, arg = await self._queue.get()
            try:
                await self._write(kind, arg)
            except Exception as exc:          # noqa: BLE001 - an output's fault costs one write
                self.problem("output", f"Writing to the line outputs failed ({type(exc).__name__}: {exc}).")
                self.on_error("Line outputs", exc)

    async def _write(self, kind: str, arg) -> None:
        if kind == "result":
            await self._publish(arg)
        elif kind == "safe":
            await self._safe(*arg)
        elif kind == "busy":
            self._halt = ""
            await self._set_state("busy")
        elif kind == "halt":
            if arg != self._halt:
                self._halt = arg
                await self._set_state()
        elif kind == "model":
            st = arg
            self._model_error = "" if st.has_model else (
                st.error or f"no model for product {st.product!r}: learn good parts first")
            await self._set_state()
        elif kind == "state":
            await self._set_state(force=True)
        elif kind == "running":
            self._stopped_error = "" if arg else "the line is stopped"
            await self._set_state()
        elif kind == "product":
            self._product_error = ""
            await self._set_state(product=arg)

    async def _publish(self, r: LineResult, safe: bool = False) -> None:
        if not safe and r.part_id in self._timed_out:
            self.problem("late", f"Part {r.part_id} was judged {r.decision} after its timeout; "
                                 "the line kept the safe answer (the log has both rows).")
            await self._set_state()
            return
        self._cancel_timer(r.part_id)
        self._halt = ""
        self._seq += 1
        r = LineResult(self._seq, *[getattr(r, f) for f in _FIELDS[1:]])
        self.last = r
        self.recent.append(r)
        if self._pulse is not None:
            self._pulse.cancel()
        for out in self._running():
            await out.write_valid(False)
            await out.write_result(r)
            await out.write_valid(True)
        self._pulse = asyncio.get_running_loop().call_later(
            self.config.result_valid_ms / 1000.0, self._pulse_off)
        await self._set_state()

    def _pulse_off(self) -> None:
        self._pulse = None

        async def off():
            for out in self._running():
                await out.write_valid(False)
        asyncio.ensure_future(off())

    async def _safe(self, part_id: str, why: str, live=None) -> None:
        """The safe answer for a triggered part that gets no verdict (timeout, not judged)."""
        p = self.pipeline
        threshold = float(getattr(p, "_threshold", 0.0)) if p is not None else 0.0
        spec = getattr(p, "spec", None)
        product = spec.product if spec is not None else ""
        last = self.last
        parts = (last.parts if last else 0)
        r = LineResult(0, part_id, self.config.timeout_verdict, float("inf"), threshold, "",
                       product, time.time(), parts, last.fails if last else 0,
                       last.reviews if last else 0, why, time.perf_counter())
        self._log_safe(r)
        await self._publish(r, safe=True)

    def _log_safe(self, r: LineResult) -> None:
        """The safe answer is a row of the inspection log like any verdict."""
        p = self.pipeline
        submit = getattr(p, "log_submit", None) if p is not None else None
        if submit is None:
            log.warning("part %s: %s (%s; not in the inspection log: it is not open)",
                        r.part_id, r.decision, r.reason)
            return
        from engine.log import InspectionRecord
        from engine.types import Decision, Verdict
        v = Verdict(frame_id=-1, score=r.score, decision=Decision(r.decision),
                    threshold=r.threshold, reason=r.reason, part_id=r.part_id)
        submit(InspectionRecord(verdict=v, wall_time=r.wall_time, station=p.station,
                                camera="", product=r.product, part_id=r.part_id))

    async def _set_state(self, state: str | None = None, product: str | None = None,
                         force: bool = False) -> None:
        s = self._state
        if product is not None:
            s = LineState(s.state, s.text, product, self.product_number(product))
        error = self._product_error or self._stopped_error or self._model_error or self._halt
        if error:
            s = LineState("error", error, s.product, s.product_number)
        else:
            busy = state == "busy" or (state is None and self.gate.armed)
            s = LineState("busy" if busy else "ready", "", s.product, s.product_number)
        if s == self._state and product is None and not force:
            return
        self._state = s
        for out in self._running():
            await out.write_state(s)

    def _running(self) -> list[ResultOutput]:
        return [o for o in self.outputs if o.running]

    # ---- what the PLC asks (on the loop, from an output) ---------------------------------
    def request_trigger(self, part_id: str | None, via: str) -> tuple[str, str]:
        if self._state.state == "error":
            why = f"Trigger refused: the station is in error ({self._state.text})."
            self.problem("busy", why)
            return "", why
        pid, why = self.gate.arm(part_id, via)
        if why:
            self.problem("part_id" if "part id" in why else "busy", why)
            return "", why
        loop = asyncio.get_running_loop()
        self._timers[pid] = loop.call_later(self.config.timeout_ms / 1000.0, self._timeout, pid)
        self._enqueue(("busy", pid))
        return pid, ""

    def _timeout(self, part_id: str) -> None:
        self._timers.pop(part_id, None)
        self.gate.cancel(part_id)
        why = (f"no verdict within {self.config.timeout_ms} ms of the trigger: "
               f"{self.config.timeout_verdict} (safe answer)")
        self.problem("timeout", f"Part {part_id}: {why}.")
        self._enqueue(("safe", (part_id, why, None)))
        self._timed_out.append(part_id)

    def _cancel_timer(self, part_id: str) -> None:
        t = self._timers.pop(part_id, None)
        if t is not None:
            t.cancel()

    def request_product(self, name: str | None, number: int | None, via: str) -> str:
        if name is None:
            names = self.config.product_numbers
            if number is None or not 1 <= number <= len(names):
                known = ", ".join(f"{i + 1}={n}" for i, n in enumerate(names)) or "none are set"
                why = (f"Unknown product number {number} from the PLC ({via}); product numbers: "
                       f"{known}. The station stays in error until a known product is chosen.")
                return self._product_refused(why)
            name = names[number - 1]
        if name == self._state.product and not self._product_error:
            return ""
        why = self.switch_product(name)
        if why:
            return self._product_refused(f"Product {name!r} from the PLC ({via}) refused: {why} "
                                         "The station stays in error until a known product is chosen.")
        self._product_error = ""
        self._enqueue(("product", name))
        return ""

    def _product_refused(self, why: str) -> str:
        self.problem("product", why)
        self._product_error = why
        self._enqueue(("state", None))             # say the state again: error with the reason
        return why

    def product_number(self, name: str) -> int:
        names = self.config.product_numbers
        return names.index(name) + 1 if name in names else 0

    def problem(self, kind: str, message: str) -> None:
        """Bad input: one sentence in the log file and to the listener, counted by kind."""
        now = time.monotonic()
        with self._clock:
            self._counts[kind] += 1
            p = LineProblem(kind, message, self._counts[kind])
            self._problems.append(p)
            # A PLC repeating the same mistake every cycle is counted each time, but the
            # log file gets the sentence once a minute.
            said = self._said.get(message)
            tell = said is None or now - said >= 60.0
            if tell:
                self._said[message] = now
                if len(self._said) > 1000:
                    self._said.clear()
        if tell:
            log.warning("line outputs: %s", message)
        try:
            self.on_problem(p)
        except Exception:                     # noqa: BLE001 - a listener must not stop the line
            log.exception("line problem listener failed")

    # ---- for the live view, tests and the REST API (any thread) -------------------------
    def counts(self) -> dict[str, int]:
        with self._clock:
            return dict(self._counts)

    def problems(self) -> tuple[LineProblem, ...]:
        with self._clock:
            return tuple(self._problems)

    @property
    def state(self) -> LineState:
        return self._state

    def views(self) -> tuple[OutputView, ...]:
        return tuple(o.view() for o in self.outputs)


_FIELDS = tuple(LineResult.__dataclass_fields__)
