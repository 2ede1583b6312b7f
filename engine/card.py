"""A trained model's card: what it was learned from and what to expect of it, in words,
written next to the model file (MODEL.pt -> MODEL.card.txt) by `train`, `calibrate` and
Learn's save, so that an engineer can read it without the app."""
from __future__ import annotations

from pathlib import Path

from engine.meta import ModelMeta
from engine.model import model_title


def expectations(meta: ModelMeta) -> list[str]:
    """What to expect of the threshold, in sentences: the false-reject rate it aims at and
    how sure that is, and what the synthetic defects say it catches (Learn's result, the
    card and `calibrate` say the same)."""
    return [x.sentence() for x in (meta.estimate, meta.synthetic) if x is not None]


def model_card(meta: dict) -> str:
    m = ModelMeta.from_dict(meta)
    cfg = meta.get("train_config", {}).get("model", {})       # the layout the model sees
    lines = [
        f"Model {m.model_id or '?'} (created {m.created_utc or '?'}"
        + (f", threshold set again {m.recalibrated_utc}" if m.recalibrated_utc else "") + ")",
        model_title(cfg)
        + (f", tiles at scale {cfg.get('tile_scale')}" if cfg.get("tiling") else "")
        + (f", region {tuple(cfg['roi'])}" if cfg.get("roi") else ""),
        f"Learned from {m.n_train} good parts ({m.n_holdout} more held out to set the "
        f"threshold), " + (f"a memory bank of {m.bank_rows} patches" if m.kind == "quick"
                           else f"{m.steps} steps")
        + f", {(m.train_seconds or 0) / 60:.1f} min on {m.device or '?'}.",
        ("Features: EfficientNet-Lite0 (ImageNet weights), no teacher" if m.kind == "quick" else
         "Teacher: " + ("RANDOM (testing only: far below the paper's accuracy)" if m.random_teacher
                        else Path(m.teacher).name)),
        f"Threshold {m.threshold:.4f}.",
        *expectations(m),
    ]
    if m.synthetic is not None:
        lines.append("Synthetic defects are blatant; real ones may be subtler, so the miss rate "
                     "above is a floor check, not a promise.")
    lines += _path_lines(meta)
    return "\n".join(lines) + "\n"


def _path_lines(meta: dict) -> list[str]:
    """The reduced-precision scoring paths the model was calibrated for (engine/precision.py)."""
    from engine.precision import calibrations, reference_auroc
    cals, ref = calibrations(meta), reference_auroc(meta)
    if not cals:
        return []
    out = [f"Calibrated scoring paths (held-out check: synthetic defects against the held-out "
           f"good parts; fp32 image AUROC {ref if ref is not None else float('nan'):.3f}):"]
    for name, c in cals.items():
        out.append(f"  {name} on the {c.device}: threshold {c.threshold:.4f}, AUROC "
                   f"{c.heldout_auroc:.3f}, {c.synthetic_missed} of {c.synthetic_n} synthetic "
                   f"defects missed, {c.holdout_frr:.1%} of held-out good parts rejected")
    return out


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
