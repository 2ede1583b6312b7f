"""A video file replayed at its own (or a chosen) rate, or a live OpenCV camera by index."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2

from engine.camera.base import EndOfStream, FrameSource, Pacer, SourceLost, SourceUnavailable
from engine.errors import InspectError
from engine.types import Frame


@dataclass(frozen=True)
class VideoConfig:
    path: str | None = None     # a video file ...
    index: int | None = None    # ... or an OpenCV camera index (webcam, capture card)
    fps: float | None = None    # files: None = the file's own rate, 0 = as fast as decoded
    loop: bool = True


class VideoSource(FrameSource):
    kind = "video"

    def __init__(self, config: VideoConfig):
        if (config.path is None) == (config.index is None):
            raise InspectError("A video source needs either a file path or a camera index.")
        super().__init__(name=f"video:{config.path}" if config.path is not None
                         else f"opencv-camera:{config.index}")
        self.config = config
        self._cap: cv2.VideoCapture | None = None
        self._pacer: Pacer | None = None
        self.file_fps = 0.0

    @property
    def is_open(self) -> bool:
        return self._cap is not None

    @property
    def is_live(self) -> bool:
        return self.config.index is not None

    def open(self) -> None:
        if self._cap is not None:
            return
        if self.is_live:
            cap = cv2.VideoCapture(int(self.config.index))
            if not cap.isOpened():
                cap.release()
                raise SourceUnavailable(f"OpenCV camera {self.config.index} cannot be opened "
                                        f"(absent, or busy in another program).")
        else:
            path = Path(self.config.path).expanduser()
            if not path.is_file():
                raise InspectError(f"Video file {path} does not exist.")
            cap = cv2.VideoCapture(str(path))
            if not cap.isOpened():
                cap.release()
                raise InspectError(f"Video file {path} cannot be decoded (unknown format or broken).")
            self.file_fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
            rate = self.config.fps if self.config.fps is not None else (self.file_fps or 25.0)
            self._pacer = Pacer(rate)
        self._cap = cap

    def read(self, timeout: float) -> Frame | None:
        if self._cap is None:
            self.open()
        if self._pacer is not None and not self._pacer.wait(timeout):
            return None
        # A live OpenCV camera blocks here until its next frame (about one frame period);
        # OpenCV has no timeout for it.
        ok, bgr = self._cap.read()
        if not ok and not self.is_live and self.config.loop:
            self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, bgr = self._cap.read()
        if not ok:
            if self.is_live:
                raise SourceLost(f"OpenCV camera {self.config.index} stopped delivering frames.")
            if self._next_id == 0:
                raise InspectError(f"Video file {self.config.path} has no readable frames.")
            raise EndOfStream(f"{self.name}: end of the video.")
        if bgr.ndim == 2:
            rgb = cv2.cvtColor(bgr, cv2.COLOR_GRAY2RGB)
        else:
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        meta = {} if self.is_live else {"video_frame": int(self._cap.get(cv2.CAP_PROP_POS_FRAMES)) - 1}
        return self._make_frame(rgb, meta=meta)

    def close(self) -> None:
        cap, self._cap = self._cap, None
        if cap is not None:
            cap.release()

    def settings(self) -> dict:
        c = self.config
        return {"path": c.path, "index": c.index, "fps": c.fps, "loop": c.loop, "file_fps": self.file_fps}
