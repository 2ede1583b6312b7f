"""Plain, frozen values that cross threads: a camera frame and a scoring verdict.

Only these (plain values and numpy arrays) travel between the acquisition thread, the
scoring worker, the log writer and the GUI. Arrays are never written to after creation.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum

import numpy as np


@dataclass(frozen=True, eq=False)
class Frame:
    id: int                 # monotonic per source, starts at 0
    t: float                # time.monotonic() when the frame arrived
    wall_time: float        # time.time() (UTC epoch seconds) when the frame arrived
    source: str             # human-readable source name, e.g. "viky:SN1234", "folder:/x"
    rgb: np.ndarray         # H×W×3 uint8, C-contiguous, RGB
    raw: np.ndarray | None = None         # the camera's raw data (e.g. uint16 Mono12) when kept
    label: str | None = None              # ground truth where the source knows it ("good"/defect kind)
    mask: np.ndarray | None = None        # H×W bool ground-truth defect mask where known
    meta: dict = field(default_factory=dict)  # plain values only (exposure, pixel format, ...)

    def __post_init__(self) -> None:
        a = self.rgb
        if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3 or not a.flags.c_contiguous:
            raise ValueError(
                f"Frame.rgb must be a C-contiguous H×W×3 uint8 array, got {a.dtype} {a.shape}")


class Decision(str, Enum):
    PASS = "PASS"
    FAIL = "FAIL"
    REVIEW = "REVIEW"


def nonfinite_reason(score: float, threshold: float | None = None) -> str:
    """Why a verdict cannot be trusted ("" when score and threshold are ordinary numbers)."""
    def kind(v: float) -> str:
        return "not a number (NaN)" if math.isnan(v) else "infinite"
    if not math.isfinite(score):
        return f"score is {kind(score)}: the model output is broken; learn good parts again"
    if threshold is not None and not math.isfinite(threshold):
        return f"threshold is {kind(threshold)}: set a threshold on the Threshold screen"
    return ""


def decide(score: float, threshold: float, review_below: float | None = None) -> Decision:
    """FAIL at or above `threshold`; REVIEW in [review_below, threshold) when a band is set.

    A score or threshold that is not a finite number is a FAIL: NaN compares False with
    everything, so the plain comparison would pass every part a broken model looks at.
    Thresholds are checked where they enter (settings, model file, command line); this is
    the last line of defence for the score itself."""
    if not (math.isfinite(score) and math.isfinite(threshold)):
        return Decision.FAIL
    if score >= threshold:
        return Decision.FAIL
    if review_below is not None and (score >= review_below or not math.isfinite(review_below)):
        return Decision.REVIEW          # a broken band sends parts to a person, never to PASS
    return Decision.PASS


@dataclass(frozen=True, eq=False)
class Verdict:
    frame_id: int
    score: float
    decision: Decision
    threshold: float
    anomaly_map: np.ndarray | None = None   # H×W float32 at the frame's resolution
    model_id: str = ""
    latency_ms: float = 0.0
    reason: str = ""                # why the decision is not the plain score comparison

    def __post_init__(self) -> None:
        # A non-finite score is a FAIL (decide) and says why, whoever built the verdict.
        if not self.reason:
            why = nonfinite_reason(self.score, self.threshold)
            if why:
                object.__setattr__(self, "reason", why)
