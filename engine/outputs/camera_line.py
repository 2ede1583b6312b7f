"""The camera's own output line as a result output (GenICam SFNC digital I/O): a rejected
part raises the line for the result-valid pulse, wired straight to a reject gate or a PLC
input without any network.

    LineSelector = Line1, LineMode = Output, LineSource = UserOutput0   (once, at open)
    UserOutputSelector = UserOutput0, UserOutputValue = True / False   (per result / pulse end)

Where the camera has no such nodes (the virtual camera, a camera without outputs) or the
source is not a GenICam camera, the output says so in one sentence and the other outputs
run on. Node writes happen on a worker of the outputs' loop (a GigE register write takes
a round trip); GenApi serialises node access with the acquisition itself.
"""
from __future__ import annotations

import asyncio
from typing import Callable

from engine.errors import InspectError
from engine.outputs.base import Link, ResultOutput
from engine.outputs.values import LineResult, LineState

NODES = ("LineSelector", "LineSource", "UserOutputSelector", "UserOutputValue")


def nodes_of_feed(feed) -> Callable[[], object]:
    """A provider of the live camera's CameraNodes (engine/camera/nodes.py) for a CameraFeed:
    the camera may reconnect, so it is asked again at every write."""
    def provide():
        acq = getattr(feed, "acquisition", None)
        source = getattr(acq, "source", None)
        if source is None or getattr(source, "kind", "") != "genicam":
            kind = getattr(source, "kind", None) or getattr(getattr(feed, "cam", None), "source", "none")
            raise InspectError(f"The camera output line needs a GenICam camera; the source now is "
                               f"{kind!r}, which has no output lines.")
        nodes = getattr(source, "_nodes", None)      # the open camera's checked node access
        if nodes is None:
            raise InspectError(f"Camera {source.name} is not open yet: the output line is set "
                               "when it is.")
        return nodes
    return provide


class CameraLineOutput(ResultOutput):
    name = "Camera output line"

    def __init__(self, provider: Callable[[], object], line: str = "Line1",
                 user_output: str = "UserOutput0", on: tuple[str, ...] = ("FAIL",)):
        super().__init__()
        self.provider = provider           # () -> CameraNodes, or InspectError saying why not
        self.line, self.user_output, self.on = line, user_output, tuple(on)
        self._configured = None            # the CameraNodes the line was set up on
        self._said = ""
        self.link: Link | None = None

    @property
    def address(self) -> str:
        return f"camera {self.line} <- {self.user_output} (high on {'/'.join(self.on)})"

    async def open(self, link: Link) -> None:
        self.link = link
        try:
            await self._run(self._setup)
        except InspectError as exc:        # e.g. the camera opens later: said, tried again
            if "not open yet" not in str(exc):
                raise
            self.error = str(exc)

    async def close(self) -> None:
        try:
            await self._run(self._set, False)
        except InspectError:
            pass

    async def _run(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(None, fn, *args)

    def _setup(self):
        """Check the camera's nodes and route the user output to the line (once per camera
        connection). Raises InspectError naming what is missing."""
        nodes = self.provider()
        if nodes is self._configured:
            return nodes
        missing = [n for n in NODES if not nodes.has(n)]
        if missing:
            raise InspectError(f"Camera {nodes.device} has no output line to drive (GenICam "
                               f"node(s) {', '.join(missing)} not found); use the OPC UA or "
                               "Modbus outputs instead.")
        nodes.write("LineSelector", self.line, "output line")
        if nodes.has("LineMode"):
            nodes.write("LineMode", "Output", f"{self.line} mode")
        nodes.write("LineSource", self.user_output, f"{self.line} source")
        nodes.write("UserOutputSelector", self.user_output, "user output")
        nodes.write("UserOutputValue", False, self.user_output)
        self._configured, self.error = nodes, ""
        return nodes

    def _set(self, on: bool) -> None:
        nodes = self._setup()
        nodes.write("UserOutputSelector", self.user_output, "user output")
        nodes.write("UserOutputValue", bool(on), self.user_output)

    async def _drive(self, on: bool) -> None:
        try:
            await self._run(self._set, on)
        except InspectError as exc:        # said once per reason, counted each time it changes
            self._configured = None
            self.error = str(exc)
            if str(exc) != self._said and self.link is not None:
                self._said = str(exc)
                self.link.problem("output", str(exc))
            return
        self._said = ""
        self.remember(line=self.line, level="high" if on else "low")

    async def write_result(self, result: LineResult) -> None:
        await self._drive(result.decision in self.on)

    async def write_valid(self, on: bool) -> None:
        if not on:                          # the end of the pulse: the line goes low
            await self._drive(False)

    async def write_state(self, state: LineState) -> None:
        self.remember(state=state.state)
