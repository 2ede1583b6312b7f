"""The live camera for the app: the app's camera settings -> an engine/camera FrameSource,
run by engine.camera.Acquisition (its thread, latest-frame slot, counters, reconnect).
No Qt here: status goes to a plain callback that the GUI side relays.

    feed = CameraFeed(settings.camera, on_status=print)
    feed.start(); seq, frame = feed.latest(after_seq=-1, timeout=1.0); feed.stop()

The scoring thread always takes the NEWEST frame: when scoring is slower than the camera,
older frames are skipped (counted by the acquisition as dropped) instead of queueing up.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable

from engine.errors import InspectError
from engine.settings import CameraSettings
from engine.types import Frame

log = logging.getLogger("inspect.camera")


@dataclass(frozen=True)
class FeedStatus:
    state: str          # "connecting" | "live" | "lost" | "stopped" | "error" | "ended"
    message: str        # a sentence for the operator
    source: str = ""
    frames: int = 0
    dropped: int = 0


def make_source(cam: CameraSettings):
    """The engine/camera FrameSource these settings describe (GenICam settings are applied
    at every (re)connect by the source itself)."""
    if cam.source == "simulated":
        from engine.camera.simulated import SimulatedLineConfig, SimulatedLineSource
        return SimulatedLineSource(SimulatedLineConfig(fps=cam.fps))
    if cam.source == "folder":
        from engine.camera.folder import FolderConfig, FolderSource
        return FolderSource(FolderConfig(path=cam.path, fps=cam.fps, loop=True))
    if cam.source == "video":
        from engine.camera.video import VideoConfig, VideoSource
        return VideoSource(VideoConfig(path=cam.path, fps=cam.fps, loop=True))
    if cam.source == "genicam":
        from engine.camera.genicam import GenICamConfig, GenICamSource
        wanted = {"trigger": cam.trigger}
        if cam.exposure_us is not None:
            wanted["exposure_us"] = cam.exposure_us
        if cam.gain_db is not None:
            wanted["gain_db"] = cam.gain_db
        return GenICamSource(GenICamConfig(
            producers=(cam.producer_file,) if cam.producer_file else (),
            serial=cam.device or None, settings=wanted))
    raise InspectError(f"Unknown camera source {cam.source!r}.")


# engine/camera acquisition states -> what the live screen shows
_STATES = {"streaming": "live", "connecting": "connecting", "reconnecting": "lost",
           "failed": "error", "finished": "ended", "stopped": "stopped", "idle": "stopped"}


class CameraFeed:
    """engine.camera.Acquisition (the acquisition thread with its latest-frame slot,
    counters and reconnect) for the current camera settings, restartable with new ones."""

    def __init__(self, cam: CameraSettings, on_status: Callable[[FeedStatus], None] = lambda s: None,
                 source_factory: Callable[[CameraSettings], object] = make_source):
        self.cam = cam
        self.on_status = on_status
        self.source_factory = source_factory
        self.acquisition = None
        self._seq = -1
        self.state = "stopped"

    def configure(self, cam: CameraSettings) -> None:
        """New camera settings; take effect at the next start()."""
        self.cam = cam

    def start(self) -> None:
        """Build the source and start its acquisition thread. Call it from a worker thread:
        the acquisition thread inherits that thread's (lower) priority."""
        from engine.camera import Acquisition
        if self.acquisition is not None and self.acquisition.running:
            return
        try:
            source = self.source_factory(self.cam)
        except InspectError as exc:           # e.g. a folder source without a folder
            self._status("error", str(exc))
            return
        self.acquisition = Acquisition(source, on_status=self._on_acquisition_status).start()

    def stop(self, timeout: float = 5.0) -> None:
        acq, self.acquisition = self.acquisition, None
        if acq is not None:
            if not acq.stop(timeout):
                log.warning("the acquisition thread of %s did not stop within %.0f s",
                            acq.source.name, timeout)

    @property
    def running(self) -> bool:
        return self.acquisition is not None and self.acquisition.running

    def latest(self, after_seq: int, timeout: float) -> tuple[int, Frame] | None:
        """The newest frame not taken yet (waiting up to timeout s), numbered in take order."""
        acq = self.acquisition
        if acq is None:
            time.sleep(min(timeout, 0.05))
            return None
        frame = acq.wait_frame(timeout)
        if frame is None:
            return None
        self._seq += 1
        return self._seq, frame

    def rate_hz(self) -> float:
        acq = self.acquisition
        return acq.rate_hz() if acq is not None else 0.0

    def _on_acquisition_status(self, st) -> None:     # on the acquisition thread
        state = _STATES.get(getattr(st.state, "value", str(st.state)), "stopped")
        message = st.message
        if state == "lost":
            message = f"{st.source}: {st.message}"
        self.state = state
        self.on_status(FeedStatus(state, message, st.source, st.received, st.dropped))

    def _status(self, state: str, message: str) -> None:
        self.state = state
        try:
            self.on_status(FeedStatus(state, message))
        except Exception:                       # a status listener must not stop acquisition
            log.exception("camera status listener failed")
