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

    @classmethod
    def from_dict(cls, d: dict | None) -> "ModelMeta":
        d = d or {}
        est, syn = d.get("threshold_estimate"), d.get("synthetic_check")
        return cls(
            model_id=str(d.get("model_id", "")), created_utc=str(d.get("created_utc", "")),
            threshold=float(d.get("threshold", 0.5)),
            holdout_scores=tuple(float(x) for x in d.get("holdout_scores", ()) if math.isfinite(float(x))),
            holdout_false_reject_rate=_float_or_none(d.get("holdout_false_reject_rate")),
            n_train=int(d.get("n_train", 0)), n_holdout=int(d.get("n_holdout", 0)),
            steps=int(d.get("steps", 0)), teacher=str(d.get("teacher", "")),
            device=str(d.get("device", "")), train_seconds=_float_or_none(d.get("train_seconds")),
            estimate=ThresholdEstimate.from_dict(est) if isinstance(est, dict) else None,
            synthetic=SyntheticCheck.from_dict(syn) if isinstance(syn, dict) else None)

    @property
    def random_teacher(self) -> bool:
        return self.teacher == "random"


def _float_or_none(v) -> float | None:
    return None if v is None else float(v)
