"""The line's camera: the camera settings -> one engine/camera source spec -> make_source,
run by engine.camera.Acquisition (its thread, latest-frame slot, counters, rate, reconnect).

    feed = CameraFeed(settings.camera, on_status=print)
    feed.start(); frame = feed.next_frame(timeout=1.0); feed.stop()

The scoring thread always takes the NEWEST frame: when scoring is slower than the camera,
older frames are skipped (counted by the acquisition as dropped) instead of queueing up.
"""
from __future__ import annotations

import logging
import time
from typing import Callable

from engine.errors import InspectError
from engine.line.values import FeedStatus
from engine.settings import CameraSettings
from engine.types import Frame

log = logging.getLogger("inspect.camera")


def source_for(cam: CameraSettings):
    """The FrameSource these settings describe, built by the camera spec (the one way to
    build a source; GenICam settings are applied at every (re)connect by the source)."""
    from engine.camera import make_source
    return make_source(cam.source_spec())


# engine/camera acquisition states -> what the live screen shows
_STATES = {"streaming": "live", "connecting": "connecting", "reconnecting": "lost",
           "failed": "error", "finished": "ended", "stopped": "stopped", "idle": "stopped"}


class CameraFeed:
    """engine.camera.Acquisition for the current camera settings, restartable with new ones.
    start/stop are called by the scoring thread only (never the GUI thread)."""

    def __init__(self, cam: CameraSettings, on_status: Callable[[FeedStatus], None] = lambda s: None,
                 source_factory: Callable[[CameraSettings], object] = source_for):
        self.cam = cam
        self.on_status = on_status
        self.source_factory = source_factory
        self.acquisition = None
        self.state = "stopped"

    def configure(self, cam: CameraSettings) -> None:
        """New camera settings; take effect at the next start()."""
        self.cam = cam

    def start(self) -> None:
        """Build the source and start its acquisition thread (from the scoring thread: the
        acquisition thread inherits its lower priority)."""
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
        if acq is not None and not acq.stop(timeout):
            log.warning("the acquisition thread of %s did not stop within %.0f s",
                        acq.source.name, timeout)

    @property
    def running(self) -> bool:
        return self.acquisition is not None and self.acquisition.running

    def next_frame(self, timeout: float) -> Frame | None:
        """The newest frame not taken yet, waiting up to timeout s; None when none came."""
        acq = self.acquisition
        if acq is None:                       # the source could not be built: do not spin
            time.sleep(min(timeout, 0.05))
            return None
        return acq.wait_frame(timeout)

    def rate_hz(self) -> float:
        """Frames the camera delivers per second: the acquisition's own measurement."""
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
