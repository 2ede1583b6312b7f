"""Model versions: every trained model is a version of its product, registered in the log's
`models` table (file, what it learned from, teacher, steps, held-out statistics, who trained
it, when, and for a relearned model the labels and pictures it used).

The table keeps the version's details as one JSON object (`models.metrics`); this module is
the one place that spells its keys, and `ModelVersion` is the frozen value the screens get.
Activating a version is a settings change (the product's model file; the threshold last
applied to that version, or its own default), so it goes through the same path as every
model swap: `Services.save` -> `Pipeline.set_model`. No Qt here.
"""
from __future__ import annotations

import calendar
import json
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from engine.errors import InspectError
from engine.meta import ModelMeta

GOOD_SET_SUFFIX = ".good"          # <model file>.good/: the good pictures it learned from


@dataclass(frozen=True)
class ModelVersion:
    model_id: str
    product: str
    path: str
    created_us: int
    threshold: float                      # the model's own default threshold
    name: str = ""
    teacher: str = ""
    steps: int = 0
    n_train: int = 0
    n_holdout: int = 0
    holdout_frr: float | None = None      # share of held-out good parts at its threshold
    holdout_median: float | None = None
    holdout_max: float | None = None
    trained_by: str = ""
    device: str = ""
    train_seconds: float | None = None
    kind: str = "efficientad"
    training_set: str = ""                # in words: what it learned from
    good_set: str = ""                    # folder of the good pictures it learned from, "" none
    labels_used: tuple[int, ...] = ()     # log rows (false rejects) it learned from
    parent: str = ""                      # the version it was relearned from
    notes: str = ""

    @property
    def file_exists(self) -> bool:
        return Path(self.path).is_file()

    @property
    def created_text(self) -> str:
        return time.strftime("%Y-%m-%d %H:%M", time.localtime(self.created_us / 1e6))


def _finite(v) -> float | None:
    return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None


def version_of(meta: ModelMeta, path: str | Path, product: str, trained_by: str = "",
               training_set: str = "", good_set: str = "", labels_used=(), parent: str = "",
               kind: str = "efficientad", created_us: int | None = None) -> ModelVersion:
    """The version a trained model's file and metadata make."""
    scores = np.asarray(meta.holdout_scores, dtype=np.float64)
    if created_us is None:
        created_us = _utc_us(meta.created_utc) or int(time.time() * 1e6)
    summary = training_set or (f"{meta.n_train} good pictures, {meta.n_holdout} held out"
                               if meta.n_train else "not recorded")
    return ModelVersion(
        model_id=meta.model_id or Path(path).stem, product=product, path=str(path),
        created_us=created_us, threshold=float(meta.threshold),
        name=f"{product} {meta.created_utc or ''}".strip(), teacher=meta.teacher,
        steps=meta.steps, n_train=meta.n_train, n_holdout=meta.n_holdout,
        holdout_frr=meta.holdout_false_reject_rate,
        holdout_median=float(np.median(scores)) if scores.size else None,
        holdout_max=float(scores.max()) if scores.size else None, trained_by=trained_by,
        device=meta.device, train_seconds=meta.train_seconds, kind=kind, training_set=summary,
        good_set=good_set, labels_used=tuple(int(i) for i in labels_used), parent=parent)


def _utc_us(text: str) -> int | None:
    try:
        return int(calendar.timegm(time.strptime(text, "%Y-%m-%dT%H:%M:%SZ")) * 1_000_000)
    except (ValueError, OverflowError):
        return None


# ---- to and from the log's models table --------------------------------------------------

_DETAIL_KEYS = ("teacher", "steps", "n_train", "n_holdout", "holdout_frr", "holdout_median",
                "holdout_max", "trained_by", "device", "train_seconds", "kind", "training_set",
                "good_set", "labels_used", "parent")


def to_info(v: ModelVersion):
    from engine.log import ModelInfo
    details = {k: getattr(v, k) for k in _DETAIL_KEYS}
    details["labels_used"] = list(v.labels_used)
    # the keys Learn wrote before versions existed, still read by older screens
    details["holdout_false_reject_rate"] = v.holdout_frr
    return ModelInfo(v.model_id, v.name[:128], v.product, v.path, v.threshold, details,
                     v.created_us, v.notes)


def from_info(info) -> ModelVersion:
    """A registered model as a version; a row written before versions reads with what it has."""
    d = info.metrics if isinstance(info.metrics, dict) else {}

    def num(key, cast=float, default=None):
        v = _finite(d.get(key))
        return default if v is None else cast(v)

    labels = d.get("labels_used") if isinstance(d.get("labels_used"), list) else []
    return ModelVersion(
        model_id=info.model_id, product=info.product, path=info.path,
        created_us=int(info.created_us or 0), threshold=float(info.threshold), name=info.name,
        teacher=str(d.get("teacher", "")), steps=num("steps", int, 0),
        n_train=num("n_train", int, 0), n_holdout=num("n_holdout", int, 0),
        holdout_frr=num("holdout_frr") if "holdout_frr" in d else num("holdout_false_reject_rate"),
        holdout_median=num("holdout_median"), holdout_max=num("holdout_max"),
        trained_by=str(d.get("trained_by", "")), device=str(d.get("device", "")),
        train_seconds=num("train_seconds"), kind=str(d.get("kind", "efficientad")),
        training_set=str(d.get("training_set", "")), good_set=str(d.get("good_set", "")),
        labels_used=tuple(int(i) for i in labels if isinstance(i, int)),
        parent=str(d.get("parent", "")), notes=info.notes)


def register(log, version: ModelVersion) -> None:
    """Add the version to the log's models table (or update it: same id)."""
    log.register_model(to_info(version))


def versions_of(log, product: str | None = None) -> list[ModelVersion]:
    """Newest first."""
    return [from_info(i) for i in log.models(product)]


def register_file(log, path: str | Path, product: str, trained_by: str = "") -> ModelVersion:
    """A model file that is not registered yet (trained with `main.py train`, or before
    versions existed) becomes a version, from the metadata in the file."""
    from engine.model import load_checkpoint
    _model, meta = load_checkpoint(path)
    info = ModelMeta.from_dict(meta)
    known = log.model(info.model_id) if info.model_id else None
    if known is not None:
        return from_info(known)
    good = good_set_dir(path)
    version = version_of(info, Path(path).resolve(), product, trained_by,
                         good_set=str(good) if good.is_dir() else "")
    register(log, version)
    return version


# ---- which is active, what rolling back goes to ------------------------------------------

def same_file(a: str | Path, b: str | Path) -> bool:
    if not a or not b:
        return False
    try:
        return Path(a).resolve() == Path(b).resolve()
    except OSError:
        return str(a) == str(b)


def active_of(versions: list[ModelVersion], model_file: str) -> ModelVersion | None:
    return next((v for v in versions if same_file(v.path, model_file)), None)


def previous_of(versions: list[ModelVersion], active: ModelVersion | None) -> ModelVersion | None:
    """Rolling back goes to the newest version older than the active one whose file is
    still there (with no active version: the newest one there)."""
    older = sorted((v for v in versions if v.file_exists and
                    (active is None or (v.created_us, v.model_id) < (active.created_us, active.model_id))),
                   key=lambda v: (v.created_us, v.model_id), reverse=True)
    return older[0] if older else None


def activation(settings, version: ModelVersion, threshold: float | None = None,
               review_below: float | None = None):
    """The settings that make `version` its product's model. `threshold`: the one last
    applied to this version (None: the version's own default). Scores of two versions are
    not on one scale, so another version's threshold is never carried over."""
    if not version.file_exists:
        raise InspectError(f"The model file of version {version.model_id} ({version.path}) is "
                           "gone; it cannot be activated. Choose another version.")
    product = settings.products.get(version.product)
    if product is None:
        from engine.settings import ProductSettings
        product = ProductSettings()
    if review_below is not None and (threshold is None or review_below >= threshold):
        review_below = None
    new = replace(product, model_file=str(version.path), threshold=threshold,
                  review_below=review_below)
    return replace(settings.with_product(version.product, new), current_product=version.product)


def last_threshold(log, product: str, model_id: str) -> float | None:
    """The threshold last applied to this version on the Threshold screen, if any."""
    for change in log.threshold_changes(product, limit=500):   # newest first
        if change.model_id == model_id:
            return change.new_threshold
    return None


# ---- comparing two versions ---------------------------------------------------------------

def _fmt(v, digits: int = 4) -> str:
    if v is None or v == "" or v == ():
        return "—"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def compare(a: ModelVersion, b: ModelVersion) -> list[tuple[str, str, str]]:
    """(what, a, b) rows for the screen, in the order an engineer reads them."""
    def pct(x):
        return "—" if x is None else f"{100 * x:.1f} %"
    rows = [
        ("version", a.model_id, b.model_id),
        ("trained", a.created_text, b.created_text),
        ("trained by", _fmt(a.trained_by), _fmt(b.trained_by)),
        ("model kind", a.kind, b.kind),
        ("learned from", _fmt(a.training_set), _fmt(b.training_set)),
        ("false rejects learned", str(len(a.labels_used)), str(len(b.labels_used))),
        ("teacher", Path(a.teacher).name or "—", Path(b.teacher).name or "—"),
        ("steps", f"{a.steps:,}", f"{b.steps:,}"),
        ("threshold (own)", _fmt(a.threshold), _fmt(b.threshold)),
        ("held-out good parts", str(a.n_holdout), str(b.n_holdout)),
        ("held-out median score", _fmt(a.holdout_median), _fmt(b.holdout_median)),
        ("held-out highest score", _fmt(a.holdout_max), _fmt(b.holdout_max)),
        ("held-out false rejects", pct(a.holdout_frr), pct(b.holdout_frr)),
        ("training time", _seconds(a.train_seconds), _seconds(b.train_seconds)),
        ("relearned from", _fmt(a.parent), _fmt(b.parent)),
        ("file", a.path if a.file_exists else f"{a.path} (missing)",
         b.path if b.file_exists else f"{b.path} (missing)"),
    ]
    return rows


def _seconds(s: float | None) -> str:
    if s is None:
        return "—"
    return f"{s / 60:.1f} min" if s >= 120 else f"{s:.0f} s"


# ---- the good pictures a version learned from --------------------------------------------

def good_set_dir(model_path: str | Path) -> Path:
    p = Path(model_path)
    return p.with_name(p.name + GOOD_SET_SUFFIX)


def save_good_set(folder: str | Path, images: list[np.ndarray], names: list[str] | None = None) -> int:
    """Write the pictures as lossless PNGs (a relearn needs exactly what was learned)."""
    import cv2
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for i, im in enumerate(images):
        name = names[i] if names else f"{i:05d}"
        if not cv2.imwrite(str(folder / f"{name}.png"), np.ascontiguousarray(im[..., ::-1])):
            raise InspectError(f"A good picture could not be written to {folder}: check the "
                               "free space and the folder's permissions.")
    return len(images)


def load_good_set(folder: str | Path) -> list[np.ndarray]:
    """The good pictures of a version ([] when it kept none)."""
    from engine.data import list_images, load_images
    folder = Path(folder)
    if not folder.is_dir():
        return []
    images, _kept = load_images(list_images(folder, lambda _p, _m: None), lambda _p, _m: None)
    return images


def describe(versions: list[ModelVersion], active: ModelVersion | None) -> str:
    """One sentence for the screen's head."""
    if not versions:
        return "No model versions are registered for this product yet: Learn good parts first."
    n = len(versions)
    if active is None:
        return f"{n} version{'s' if n != 1 else ''}; none of them is the product's model now."
    return (f"{n} version{'s' if n != 1 else ''}; in use: {active.model_id} "
            f"(trained {active.created_text}).")


def dumps(v: ModelVersion) -> str:
    """The version as one JSON line (export, the audit's detail)."""
    d = {k: getattr(v, k) for k in ("model_id", "product", "path", "created_us", "threshold",
                                    *_DETAIL_KEYS)}
    d["labels_used"] = list(v.labels_used)
    return json.dumps(d, sort_keys=True)


def register_learned(log, path: str | Path, meta: ModelMeta, product: str, trained_by: str,
                     good_images: list[np.ndarray] | None = None) -> ModelVersion:
    """Learn's Save: keep the good pictures beside the model file (a later relearn starts
    from exactly them) and register the version. Writes files: call on a worker."""
    good = ""
    if good_images:
        folder = good_set_dir(path)
        save_good_set(folder, good_images)
        good = str(folder.resolve())
    version = version_of(meta, Path(path).resolve(), product, trained_by, good_set=good)
    if log is not None:
        register(log, version)
    return version
