"""What a trained model says about itself, as a frozen value that may cross threads.

The model file keeps its metadata as a plain dict (the checkpoint convention); everything
that reads it outside the file's own code goes through `ModelMeta`, so a key is spelled in
one place and a file of an earlier version (keys missing) reads with defaults.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from engine.calibration import ThresholdEstimate
from engine.synthetic import SyntheticCheck


@dataclass(frozen=True)
class ModelMeta:
    model_id: str = ""
    created_utc: str = ""
    recalibrated_utc: str = ""                       # when `calibrate` set the threshold again
    threshold: float = 0.5
    holdout_scores: tuple[float, ...] = ()
    holdout_false_reject_rate: float | None = None
    n_train: int = 0
    n_holdout: int = 0
    steps: int = 0
    teacher: str = ""
    device: str = ""
    train_seconds: float | None = None
    estimate: ThresholdEstimate | None = None        # how the threshold was set, how sure
    synthetic: SyntheticCheck | None = None          # the synthetic-defect check at it
    kind: str = "efficientad"                        # or "quick" (engine/quick.py)
    bank_rows: int = 0                               # quick model: patches in its bank
    scoring_path: str = ""                           # set by the Scorer: the path it judges on, why

    @classmethod
    def from_dict(cls, d: dict | None) -> "ModelMeta":
        """Never raises: a model file's meta is checked for what scoring needs (the
        threshold) when it is loaded; anything else odd in it reads as not known."""
        d = d if isinstance(d, dict) else {}
        est, syn = d.get("threshold_estimate"), d.get("synthetic_check")
        scores = d.get("holdout_scores")
        return cls(
            model_id=str(d.get("model_id", "")), created_utc=str(d.get("created_utc", "")),
            recalibrated_utc=str(d.get("recalibrated_utc", "")),
            threshold=_number(d.get("threshold"), 0.5),
            holdout_scores=tuple(x for x in (_number(v, math.nan) for v in
                                             (scores if isinstance(scores, (list, tuple)) else ()))
                                 if math.isfinite(x)),
            holdout_false_reject_rate=_number(d.get("holdout_false_reject_rate"), None),
            n_train=int(_number(d.get("n_train"), 0)), n_holdout=int(_number(d.get("n_holdout"), 0)),
            steps=int(_number(d.get("steps"), 0)), teacher=str(d.get("teacher", "")),
            device=str(d.get("device", "")), train_seconds=_number(d.get("train_seconds"), None),
            estimate=_parsed(ThresholdEstimate.from_dict, est),
            synthetic=_parsed(SyntheticCheck.from_dict, syn),
            kind="quick" if d.get("kind") == "quick" else "efficientad",
            bank_rows=int(_number(d.get("bank_rows"), 0)))

    @property
    def title(self) -> str:
        """The kind of model in a few words, for screens and cards."""
        return "quick model" if self.kind == "quick" else "EfficientAD"

    @property
    def random_teacher(self) -> bool:
        return self.teacher == "random"


def _number(v, default):
    """A finite number, or `default` (None, text, NaN, a list ...)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return default
    return float(v)


def _parsed(read, v):
    """A nested record, or None when it is missing or not of the shape this version writes."""
    if not isinstance(v, dict):
        return None
    try:
        return read(v)
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
