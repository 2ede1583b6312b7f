"""GenICam cameras as a frame source: open by serial/model, settings, frames, loss detection.

Producers, hubs and device listing live in engine.camera.producers; node access in
engine.camera.nodes; pixel conversion in engine.camera.pixels.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genicam import gentl
from harvesters.core import Component2DImage

from engine.camera.base import FrameSource, SourceLost, SourceUnavailable
from engine.camera.nodes import RESTART_KEYS, STANDARD_NODES, CameraNodes, canonical, first_line
from engine.camera.pixels import SUPPORTED_FORMATS, is_supported, layout, to_rgb
from engine.camera.producers import (GENTL_ERRORS, GENTL_PATH_VARIABLE, VIKY_CTI, DeviceEntry,
                                     ProducerHub, check_producer, configured_producers,
                                     default_producers, describe_device, device_entry, hub,
                                     hub_started, info_field, list_devices)
from engine.errors import InspectError
from engine.types import Frame

__all__ = ["GenICamConfig", "GenICamSource", "VIKY_CTI", "GENTL_PATH_VARIABLE", "DeviceEntry",
           "check_producer", "configured_producers", "default_producers", "describe_device",
           "list_devices", "hub"]


# --- the source -----------------------------------------------------------------------------
@dataclass(frozen=True)
class GenICamConfig:
    producers: tuple[str, ...] = ()      # .cti files; empty: GENICAM_GENTL64_PATH, else viky
    serial: str | None = None            # serial number or device id; none: the first device
    model: str | None = None
    device_id: str | None = None
    settings: dict = field(default_factory=dict)   # applied at every (re)connect, in order
    keep_raw: bool = False               # Frame.raw keeps the samples at their bit depth
    num_buffers: int = 4
    stall_after_s: float = 3.0           # free-running and silent this long: treat as lost
    probe_every_s: float = 2.0           # with a trigger silence is normal: check it answers

    def describe_choice(self) -> str:
        parts = [f"serial {self.serial}" if self.serial else "",
                 f"model {self.model}" if self.model else "",
                 f"id {self.device_id}" if self.device_id else ""]
        return ", ".join(p for p in parts if p) or "the first camera"


def _check_requested_format(changes: dict[str, Any]) -> None:
    fmt = changes.get("pixel_format")
    if fmt is not None and not is_supported(str(fmt)):
        layout(str(fmt))                     # raises the message listing the supported ones


class GenICamSource(FrameSource):
    kind = "genicam"

    def __init__(self, config: GenICamConfig = GenICamConfig()):
        super().__init__(name="genicam:" + (config.serial or config.model or config.device_id or "first"))
        self.config = config
        self._lock = threading.RLock()      # fetch vs. settings and triggers from other threads
        self._desired: dict[str, Any] = canonical(config.settings)
        self._ia = None
        self._hub: ProducerHub | None = None
        self._nodes: CameraNodes | None = None
        self._entry: DeviceEntry | None = None
        self._free_running = True
        self._last_frame_t = self._last_probe_t = 0.0
        self._last_camera_id: int | None = None
        self.missed_frames = 0               # gaps in the camera's own frame counter

    # --- open / close ------------------------------------------------------------------
    @property
    def is_open(self) -> bool:
        return self._ia is not None

    @property
    def acquirer(self):
        """The harvesters ImageAcquirer while open (diagnostics and fault-injection tests)."""
        return self._ia

    @property
    def device(self) -> DeviceEntry | None:
        return self._entry

    def _producer_paths(self) -> list[Path]:
        paths = []
        for p in (self.config.producers or default_producers()):
            path = Path(p).expanduser().resolve()
            # A producer already in use is not re-checked: if its file vanished while a
            # camera was away, that is a reason to keep retrying, not a setup error.
            paths.append(path if hub_started(path) else check_producer(path))
        if not paths:
            raise InspectError(f"No GenTL producer (.cti) configured: set {GENTL_PATH_VARIABLE} "
                               f"or pass cti=PATH.")
        return paths

    def _find(self, rescan: bool) -> tuple[ProducerHub, Any, Path] | None:
        paths = self._producer_paths()
        seen: list[str] = []
        for path in paths:
            for info in hub(path).devices(rescan=rescan):
                if self._matches(info):
                    return hub(path), info, path
                seen.append(f"{info_field(info, 'model')} SN {info_field(info, 'serial_number')}")
        if not rescan:
            return None
        found = ", ".join(dict.fromkeys(seen)) or "none"
        raise SourceUnavailable(f"Camera ({self.config.describe_choice()}) not found on "
                                f"{', '.join(map(str, paths))}; devices seen: {found}.")

    def _matches(self, info) -> bool:
        c = self.config
        # the serial may also be given as the device id (what some vendor tools show)
        ids = (info_field(info, "serial_number"), info_field(info, "id_"))
        return ((not c.serial or c.serial in ids)
                and (not c.model or info_field(info, "model") == c.model)
                and (not c.device_id or info_field(info, "id_") == c.device_id))

    def _create(self):
        """Open the device. The first time the cached device list is tried first (a rescan
        would stop other cameras of the same producer); after a loss the list is stale, so
        the bus is rescanned, as the camera may come back with new handles."""
        for rescan in ((True,) if self._entry is not None else (False, True)):
            found = self._find(rescan)
            if found is None:
                continue
            hub_, info, path = found
            entry = device_entry(path, info)
            try:
                return hub_, entry, hub_.create(info, self.config.num_buffers)
            except (gentl.ResourceInUseException, gentl.AccessDeniedException, gentl.BusyException) as e:
                raise SourceUnavailable(
                    f"Camera {entry.label} is busy: another program (or another source in this "
                    f"app) has it open ({first_line(e)}).") from e
            except GENTL_ERRORS as e:
                if rescan:
                    raise SourceUnavailable(f"Camera {entry.label} cannot be opened: {first_line(e)}") from e
        raise AssertionError("unreachable: the rescan pass raises when nothing is found")

    def open(self) -> None:
        with self._lock:
            if self._ia is not None:
                return
            hub_, entry, ia = self._create()
            self.name = f"{entry.model}:SN{entry.serial}"
            self._hub, self._ia, self._entry = hub_, ia, entry
            self._nodes = CameraNodes(ia.remote_device.node_map, entry.label)
            try:
                _check_requested_format(self._desired)
                self._nodes.validate(self._desired)
                self._nodes.apply(self._desired)
                self._check_pixel_format()
                self._start()
            except BaseException:
                self.close()
                raise

    def _check_pixel_format(self) -> None:
        fmt = self._nodes.read("PixelFormat") if self._nodes.has("PixelFormat") else "Mono8"
        if not is_supported(fmt):
            offered = self._nodes.describe("PixelFormat").get("choices", [])
            usable = [f for f in offered if is_supported(f)]
            raise InspectError(
                f"Camera {self._entry.label} sends {fmt}, which this app cannot convert; set "
                f"pixel_format to one of {', '.join(usable) or 'none it offers'} "
                f"(supported: {', '.join(SUPPORTED_FORMATS)}).")

    def _start(self) -> None:
        self._free_running = self._nodes.read_trigger() in (None, "free")
        try:
            self._ia.start()
        except GENTL_ERRORS as e:
            raise SourceUnavailable(f"Camera {self._entry.label} does not start streaming: "
                                    f"{first_line(e)}") from e
        self._last_frame_t = self._last_probe_t = time.monotonic()
        self._last_camera_id = None

    def close(self) -> None:
        with self._lock:
            ia, self._ia, self._nodes = self._ia, None, None
            if ia is not None and self._hub is not None:
                self._hub.discard(ia)

    # --- frames ------------------------------------------------------------------------
    def read(self, timeout: float) -> Frame | None:
        with self._lock:
            if self._ia is None:
                raise SourceLost(f"Camera {self.name} is not open.")
            try:
                buffer = self._ia.fetch(timeout=max(0.01, min(timeout, 0.25)))
            except gentl.TimeoutException:
                self._check_silence()
                return None
            except GENTL_ERRORS as e:
                raise SourceLost(f"Camera {self.name} stopped delivering frames: {first_line(e)}") from e
            try:
                # The device can vanish between fetch and hand-back too (reading the
                # payload, queueing the buffer): that is a loss like any other.
                with buffer:        # hands the buffer back to the producer after the copy
                    frame = self._frame_from(buffer)
            except GENTL_ERRORS as e:
                raise SourceLost(f"Camera {self.name} stopped delivering frames: {first_line(e)}") from e
            self._last_frame_t = time.monotonic()
            return frame

    def _frame_from(self, buffer) -> Frame | None:
        payload = buffer.payload
        images = [c for c in (payload.components if payload else []) if isinstance(c, Component2DImage)]
        if not images:
            self.on_warning(f"Camera {self.name} sent a buffer without an image; skipped.")
            return None
        image, module = images[0], buffer.module
        fmt = image.data_format
        try:
            start = image.data_offset if image.has_part() else module.image_offset
        except GENTL_ERRORS:
            start = 0
        data = memoryview(module.raw_buffer)[start:]
        rgb, raw = to_rgb(data, image.width, image.height, fmt, row_padding=image.x_padding,
                          keep_raw=self.config.keep_raw)
        meta: dict[str, Any] = {"pixel_format": fmt, "bit_depth": layout(fmt).bit_depth}
        try:
            camera_id = int(module.frame_id)
            meta["camera_frame_id"] = camera_id
            if self._last_camera_id is not None and camera_id > self._last_camera_id + 1:
                self.missed_frames += camera_id - self._last_camera_id - 1
            self._last_camera_id = camera_id
        except GENTL_ERRORS:
            pass
        return self._make_frame(rgb, raw=raw, meta=meta)

    def _check_silence(self) -> None:
        """No frame within the timeout: normal with a trigger, suspicious when free-running."""
        now = time.monotonic()
        silent = now - self._last_frame_t
        if self._free_running and silent > self.config.stall_after_s:
            raise SourceLost(f"Camera {self.name} sent no frame for {silent:.1f} s while free-running.")
        if now - self._last_probe_t >= self.config.probe_every_s:
            self._last_probe_t = now
            try:
                self._nodes.read(self._nodes.node_name("width"))
                if not self._ia.device.module.is_open():
                    raise SourceLost(f"Camera {self.name} was closed underneath the app.")
            except (InspectError, *GENTL_ERRORS) as e:
                if isinstance(e, SourceLost):
                    raise
                raise SourceLost(f"Camera {self.name} does not answer: {first_line(e)}") from e

    # --- settings ----------------------------------------------------------------------
    def settings(self) -> dict[str, Any]:
        with self._lock:
            if self._nodes is None:
                return dict(self._desired)
            extra = tuple(k for k in self._desired if k not in STANDARD_NODES and k != "trigger")
            return self._nodes.read_settings(extra)

    def apply_settings(self, changes: dict[str, Any]) -> dict[str, Any]:
        changes = canonical(changes)
        with self._lock:
            if self._nodes is None:          # applied (and checked) at the next open
                self._desired.update(changes)
                return dict(self._desired)
            _check_requested_format(changes)
            restart = any(k in RESTART_KEYS or k not in STANDARD_NODES for k in changes)
            if restart:
                self._ia.stop()
            try:
                self._nodes.validate(changes)
                self._nodes.apply(changes)
                self._desired.update(changes)
                self._check_pixel_format()
            finally:
                if restart:
                    self._start()
            return self.settings()

    def trigger(self) -> None:
        # Not under self._lock: read() holds it for up to 0.25 s while fetch waits, and that
        # wait is exactly what the trigger ends. GenApi serialises node access itself.
        nodes = self._nodes
        if nodes is None:
            raise SourceLost(f"Camera {self.name} is not open.")
        nodes.fire_software_trigger()

    def describe(self) -> dict[str, Any]:
        """Main settings with their limits and choices, as plain values."""
        with self._lock:
            if self._nodes is None:
                return {}
            out: dict[str, Any] = {}
            for key in STANDARD_NODES:
                try:
                    out[key] = self._nodes.describe(self._nodes.node_name(key))
                except (InspectError, *GENTL_ERRORS):
                    continue
            out["trigger"] = self._nodes.read_trigger() or "free (no trigger)"
            return out
