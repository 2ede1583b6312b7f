"""A trained model's card: what it was learned from and what to expect of it, in words,
written next to the model file (MODEL.pt -> MODEL.card.txt) by `train`, `calibrate` and
Learn's save, so that an engineer can read it without the app."""
from __future__ import annotations

from pathlib import Path

from engine.calibration import ThresholdEstimate
from engine.synthetic import SyntheticCheck


def model_card(meta: dict, config: dict | None = None) -> str:
    cfg = config or meta.get("train_config", {}).get("model", {})
    teacher = meta.get("teacher")
    lines = [
        f"Model {meta.get('model_id', '?')} (created {meta.get('created_utc', '?')}"
        + (f", threshold set again {meta['recalibrated_utc']}" if meta.get("recalibrated_utc") else "") + ")",
        f"EfficientAD-{str(cfg.get('size', 'small'))[0].upper()}, input {cfg.get('image_size', '?')} px"
        + (f", tiles at scale {cfg.get('tile_scale')}" if cfg.get("tiling") else "")
        + (f", region {tuple(cfg['roi'])}" if cfg.get("roi") else ""),
        f"Learned from {meta.get('n_train', '?')} good parts ({meta.get('n_holdout', '?')} more held "
        f"out to set the threshold), {meta.get('steps', '?')} steps, "
        f"{float(meta.get('train_seconds') or 0) / 60:.0f} min on {meta.get('device', '?')}.",
        "Teacher: " + ("RANDOM (testing only: far below the paper's accuracy)" if teacher == "random"
                       else Path(str(teacher)).name),
        f"Threshold {float(meta.get('threshold', float('nan'))):.4f}.",
    ]
    if meta.get("threshold_estimate"):
        lines.append(ThresholdEstimate.from_dict(meta["threshold_estimate"]).sentence())
    if meta.get("synthetic_check"):
        lines.append(SyntheticCheck.from_dict(meta["synthetic_check"]).sentence()
                     + " Synthetic defects are blatant; real ones may be subtler, so this is a "
                       "floor check, not a promise.")
    return "\n".join(lines) + "\n"


def card_path(model_path: str | Path) -> Path:
    p = Path(model_path)
    return p.with_name(p.stem + ".card.txt")


def write_card(model_path: str | Path, meta: dict) -> Path:
    """Atomically, like the model file; an OSError is the caller's to report."""
    path = card_path(model_path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(model_card(meta), encoding="utf-8")
    tmp.replace(path)
    return path
