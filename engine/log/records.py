"""Plain frozen values the log takes in and hands out; they cross threads safely."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path

import numpy as np

from engine.types import Decision, Frame, Verdict


class Label(str, Enum):
    """The operator's later judgement of a FAIL/REVIEW."""
    CONFIRMED_DEFECT = "confirmed_defect"
    FALSE_REJECT = "false_reject"


class PictureState(str, Enum):
    """What became of a row's pictures (NULL in the database: the row never had any)."""
    OK = "ok"                  # files on disk
    PURGED = "purged"          # removed by retention; the row stays
    MISSING = "missing"        # the startup check found the files gone or truncated
    NOT_SAVED = "not_saved"    # disk full or below the reserve: the verdict was logged without them
    DROPPED = "dropped"        # too many pictures waiting in memory: logged without them


def _check_rgb(name: str, a: np.ndarray | None) -> None:
    if a is not None and (a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3):
        raise ValueError(f"InspectionRecord.{name} must be H×W×3 uint8 RGB, got {a.dtype} {a.shape}")


@dataclass(frozen=True, eq=False)
class InspectionRecord:
    """One scored part, as the scoring worker hands it to the log writer.

    `image` is the original frame (stored lossless), `overlay` the rendered heat-map overlay
    (stored as a smaller JPEG). Both are optional: the writer keeps pictures for FAIL and
    REVIEW, and for PASS only every `LogConfig.keep_pass_every`-th one.
    """
    verdict: Verdict
    wall_time: float                 # UTC epoch seconds when the frame arrived
    station: str
    camera: str
    product: str
    image: np.ndarray | None = None
    overlay: np.ndarray | None = None

    def __post_init__(self) -> None:
        _check_rgb("image", self.image)
        _check_rgb("overlay", self.overlay)

    @classmethod
    def from_frame(cls, frame: Frame, verdict: Verdict, station: str, product: str,
                   overlay: np.ndarray | None = None) -> "InspectionRecord":
        return cls(verdict=verdict, wall_time=frame.wall_time, station=station,
                   camera=frame.source, product=product, image=frame.rgb, overlay=overlay)

    @property
    def picture_bytes(self) -> int:
        return sum(a.nbytes for a in (self.image, self.overlay) if a is not None)


@dataclass(frozen=True)
class LogEvent:
    """A status report for the GUI: `kind` is a stable code, `message` a sentence to show.

    kinds: queue_full, pictures_dropped, disk_low, disk_full, db_error, db_recovered,
    lost, pictures_checked, retention, schema_upgraded, writer_error, spooling, deferred,
    recovered, abrupt_stop, journal_error, journal_moved.
    """
    kind: str
    level: str                      # "info" | "warning" | "error"
    message: str
    details: dict = field(default_factory=dict)   # plain values; never mutated after creation


@dataclass(frozen=True)
class InspectionRow:
    """One logged inspection as the history view shows it."""
    id: int
    t_us: int
    station: str
    camera: str
    product: str
    model_id: str
    frame_id: int | None
    score: float
    threshold: float
    verdict: Decision
    latency_ms: float | None
    image_path: Path | None         # absolute paths; None when the row has no picture
    overlay_path: Path | None
    picture_state: PictureState | None
    label: Label | None
    note: str | None
    labeled_by: str | None
    labeled_at_us: int | None
    reason: str | None = None       # why the decision is not the plain comparison (NaN score…)

    @property
    def time(self) -> datetime:
        return datetime.fromtimestamp(self.t_us / 1e6, tz=timezone.utc)


@dataclass(frozen=True)
class ModelInfo:
    """A trained model as registered in the log's models table."""
    model_id: str
    name: str
    product: str
    path: str
    threshold: float
    metrics: dict = field(default_factory=dict)   # plain JSON values, e.g. {"auroc": 0.99}
    created_us: int | None = None                 # None: now
    notes: str = ""


@dataclass(frozen=True)
class ThresholdChange:
    id: int | None
    t_us: int
    who: str
    product: str
    model_id: str
    old_threshold: float | None
    new_threshold: float
    reason: str
