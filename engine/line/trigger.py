"""Which frames are judged, and under which part id.

    free run:    every frame the scoring thread takes is a part; its id is generated
    PLC trigger: a part is judged only when the PLC asked for one (OPC UA method, Modbus
                 coil); the first frame that arrived after the request is that part, and
                 the id the PLC gave (or a generated one) travels with it.

The gate is shared by the scoring thread (take) and the outputs' thread (arm, cancel): one
lock, nothing waits. One part at a time: a trigger while a part is pending or being judged
is refused with a sentence (the caller counts it), so the PLC never gets two verdicts
mixed up.
"""
from __future__ import annotations

import dataclasses
import itertools
import threading
import time

from engine.types import Frame

TRIGGER_MODES = ("free", "plc")
MAX_PART_ID = 64                        # the log's column width (inspections.part_id)


class PartIds:
    """Generated part ids, unique across restarts of the station: STATION-YYYYmmddHHMMSS-n."""

    def __init__(self, station: str):
        stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime())
        self.prefix = f"{(station or 'line')[:24]}-{stamp}-"
        self._n = itertools.count(1)

    def next(self) -> str:
        return f"{self.prefix}{next(self._n)}"


def check_part_id(part_id: str) -> str:
    """A part id from a PLC: printable, at most 64 characters; '' when it is fine."""
    if len(part_id) > MAX_PART_ID:
        return f"the part id is {len(part_id)} characters long; at most {MAX_PART_ID} are kept"
    if not part_id.isprintable():
        return "the part id holds characters that cannot be printed"
    return ""


@dataclasses.dataclass(frozen=True)
class Armed:
    part_id: str
    t: float                             # time.monotonic() of the request
    via: str                             # "opcua" | "modbus" | "rest" | "test"


class TriggerGate:
    """Free run or PLC trigger; hands the scoring thread frames tagged with a part id."""

    def __init__(self, station: str, mode: str = "free"):
        if mode not in TRIGGER_MODES:
            raise ValueError(f"trigger mode must be one of {TRIGGER_MODES}, not {mode!r}")
        self.mode = mode
        self.ids = PartIds(station)
        self._lock = threading.Lock()
        self._armed: Armed | None = None
        self._judging: str | None = None    # the part id the scoring thread is judging
        self.on_taken = lambda part_id: None  # the outputs say Busy

    def arm(self, part_id: str | None = None, via: str = "plc") -> tuple[str, str]:
        """A PLC asks for one part: (part id, "") when accepted, ("", why) when not."""
        pid = (part_id or "").strip() or self.ids.next()
        why = check_part_id(pid)
        if why:
            return "", f"Trigger refused: {why}."
        with self._lock:
            if self.mode != "plc":
                return "", "Trigger refused: the station runs free (every frame is a part)."
            busy = self._armed.part_id if self._armed else self._judging
            if busy is not None:
                return "", f"Trigger refused: the station is busy with part {busy}."
            self._armed = Armed(pid, time.monotonic(), via)
        return pid, ""

    def cancel(self, part_id: str) -> bool:
        """The part timed out: a frame that comes later is not judged as it. True when it
        was still waiting for a frame."""
        with self._lock:
            if self._armed is not None and self._armed.part_id == part_id:
                self._armed = None
                return True
            if self._judging == part_id:
                self._judging = None
            return False

    def take(self, frame: Frame) -> Frame | None:
        """On the scoring thread: the frame as a part (with its id), or None when it is not
        one (PLC mode and no trigger, or the frame is older than the trigger)."""
        with self._lock:
            if self.mode == "free":
                pid = self.ids.next()
            else:
                armed = self._armed
                if armed is None or frame.t < armed.t:
                    return None
                self._armed, pid = None, armed.part_id
            self._judging = pid
        self.on_taken(pid)
        return dataclasses.replace(frame, part_id=pid)

    def done(self, part_id: str | None) -> None:
        """The scoring thread finished the part (judged, halted or failed)."""
        with self._lock:
            if self._judging == part_id:
                self._judging = None

    @property
    def armed(self) -> bool:
        """A trigger waits for its frame."""
        with self._lock:
            return self._armed is not None

    @property
    def busy(self) -> bool:
        with self._lock:
            return self._armed is not None or self._judging is not None
