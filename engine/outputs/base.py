"""The one interface every result output implements (OPC UA, Modbus TCP).

Every method runs on the outputs' event loop (engine/outputs/aio.py), never on the scoring
or GUI thread. An output only writes what it is given and forwards what the PLC asks
(trigger, product) to its Link, the station's LineOutputs."""
from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from typing import Protocol

from engine.outputs.values import LineResult, LineState, OutputView


class Link(Protocol):
    """What an output may ask of the station (on the outputs' loop)."""

    def request_trigger(self, part_id: str | None, via: str) -> tuple[str, str]:
        """(part id, "") when accepted, ("", why) when refused (counted)."""

    def request_product(self, name: str | None, number: int | None, via: str) -> str:
        """"" when the product was switched (or is already current), else why not (counted)."""

    def problem(self, kind: str, message: str) -> None:
        """Bad input: one sentence, counted, logged."""

    def counts(self) -> dict[str, int]:
        """Problems counted so far, by kind."""

    @property
    def state(self) -> LineState:
        """The state the station says now."""


class ResultOutput(ABC):
    name = "output"

    def __init__(self) -> None:
        self._values: dict[str, str] = {}
        self._vlock = threading.Lock()
        self.error = ""
        self.running = False

    @abstractmethod
    async def open(self, link: Link) -> None:
        """Bind and serve; raises InspectError with one sentence (port in use, ...)."""

    @abstractmethod
    async def close(self) -> None:
        ...

    @abstractmethod
    async def write_result(self, result: LineResult) -> None:
        """The part's fields first, the sequence number last: a PLC that sees a new
        sequence number reads a complete result."""

    @abstractmethod
    async def write_state(self, state: LineState) -> None:
        ...

    @abstractmethod
    async def write_valid(self, on: bool) -> None:
        """The result-valid signal (a pulse: on with the result, off after its width)."""

    @property
    @abstractmethod
    def address(self) -> str:
        ...

    def remember(self, **values) -> None:
        """Keep the last written values for the live view (any thread may read them)."""
        with self._vlock:
            self._values.update({k: str(v) for k, v in values.items()})

    def view(self) -> OutputView:
        with self._vlock:
            values = tuple(self._values.items())
        return OutputView(self.name, self.address, self.running, self.error, values)
