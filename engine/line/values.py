"""The values the live engine hands to its clients (the GUI, benchmarks, tests): frozen
dataclasses of plain values and numpy arrays, the only things that cross its threads."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.meta import ModelMeta
from engine.types import Frame, Verdict


@dataclass(frozen=True)
class FeedStatus:
    """The camera as the live screen shows it."""
    state: str          # "connecting" | "live" | "lost" | "stopped" | "error" | "ended"
    message: str        # a sentence for the operator
    source: str = ""
    frames: int = 0
    dropped: int = 0


@dataclass(frozen=True, eq=False)
class LiveResult:
    """What the live screen draws for one frame."""
    frame: Frame
    verdict: Verdict | None          # None: no model for this product yet, or not judging
    shown: np.ndarray                # the picture to draw (overlay already rendered if asked)
    product: str
    camera_fps: float                # the acquisition's measured rate (the one measurement)
    parts: int
    fails: int
    reviews: int
    logged: bool                     # handed to the inspection log
    halted: str = ""                 # why this part was not judged (the log cannot record it)


@dataclass(frozen=True)
class ModelSpec:
    """Which model scores frames, and with which thresholds."""
    product: str
    path: str | None                 # None: no model for this product
    threshold: float | None = None   # None: the model's own
    review_below: float | None = None


@dataclass(frozen=True)
class ModelStatus:
    """The model the line uses now, said once per model change. model_id "" means no model:
    none was learned yet (error "") or the file could not be used (error says why)."""
    product: str
    model_id: str = ""
    threshold: float | None = None   # the model's own default threshold
    error: str = ""
    meta: ModelMeta | None = None

    @property
    def has_model(self) -> bool:
        return bool(self.model_id)
