"""`eval`: learn a category's good parts, judge its test images, report what a line lives with.

    check = check_category(root, category)     # seconds: the data, before any training
    result = evaluate(check, cfg, ...)         # train (or load), score, metrics

Real sets come in many shapes. MVTec AD has `ground_truth/<type>/<stem>_mask.png`, MVTec
LOCO a folder `ground_truth/<type>/<stem>/` of PNGs (one per defect region), KolektorSDD
converted sets sometimes `<stem>.png`, and many sets only image-level labels. A defect type
whose every image has a mask gets pixel metrics; a type with no masks at all gets image
metrics only (pixel metrics marked not available); a type where only some images have one
is an error, said at once, because half the masks would bias the pixel metrics silently.
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from engine.data import list_images, load_images, load_mask, load_rgb
from engine.errors import InspectError
from engine.model import model_title


@dataclass(frozen=True)
class EvalItem:
    path: Path
    defect_type: str             # "good" or the defect folder's name
    mask: Path | None            # a mask file, a folder of masks (LOCO), or None


@dataclass(frozen=True)
class CategoryCheck:
    base: Path
    good_dir: Path
    items: tuple[EvalItem, ...]
    types_with_masks: tuple[str, ...]
    types_without_masks: tuple[str, ...]

    def summary(self) -> str:
        n_good = sum(i.defect_type == "good" for i in self.items)
        text = (f"{self.base.name}: {n_good} good and {len(self.items) - n_good} defective test "
                f"images; pixel metrics for {', '.join(self.types_with_masks) or 'no type'}")
        if self.types_without_masks:
            text += f"; image-level only for {', '.join(self.types_without_masks)} (no masks)"
        return text + "."


def _mask_for(gt: Path, defect_type: str, img: Path) -> Path | None:
    for cand in (gt / defect_type / f"{img.stem}_mask.png", gt / defect_type / f"{img.stem}.png",
                 gt / defect_type / img.stem):
        if cand.is_file() or (cand.is_dir() and any(cand.glob("*.png"))):
            return cand
    return None


def category_base(root: str | Path, category: str) -> Path:
    """ROOT/CATEGORY, or ROOT itself when it already is the category folder."""
    root = Path(root)
    base = root / category
    if not (base / "train").is_dir() and (root / "train").is_dir() and root.name == category:
        base = root
    return base


def check_category(root: str | Path, category: str) -> CategoryCheck:
    """The test set and its masks, checked before any training (InspectError saying what
    is missing, with examples)."""
    base = category_base(root, category)
    good_dir, test_dir, gt = base / "train" / "good", base / "test", base / "ground_truth"
    if not good_dir.is_dir() or not test_dir.is_dir():
        raise InspectError(
            f"{base} is not in MVTec layout: expected {good_dir} and {test_dir} "
            "(train/good, test/<type>, optional ground_truth/<type>/<name>_mask.png).")
    if not list_images(good_dir):
        raise InspectError(f"{good_dir} has no images to learn from.")
    items, with_masks, without = [], [], []
    for type_dir in sorted(p for p in test_dir.iterdir() if p.is_dir()):
        images = list_images(type_dir)
        if type_dir.name == "good":
            items += [EvalItem(p, "good", None) for p in images]
            continue
        masks = [_mask_for(gt, type_dir.name, p) for p in images]
        missing = [p.name for p, m in zip(images, masks) if m is None]
        if missing and len(missing) < len(images):
            raise InspectError(
                f"{len(missing)} of {len(images)} '{type_dir.name}' test images have no mask in "
                f"{gt / type_dir.name} (e.g. {', '.join(missing[:3])}); add them, or remove them "
                "all for image-level metrics only.")
        (without if missing else with_masks).append(type_dir.name)
        items += [EvalItem(p, type_dir.name, m) for p, m in zip(images, masks)]
    kinds = {i.defect_type for i in items}
    if "good" not in kinds or len(kinds) < 2:
        raise InspectError(f"{test_dir} needs test/good and at least one defect folder to measure "
                           f"anything; found {', '.join(sorted(kinds)) or 'nothing'}.")
    return CategoryCheck(base, good_dir, tuple(items), tuple(with_masks), tuple(without))


def load_mask_any(mask: Path, shape: tuple[int, int]) -> np.ndarray:
    """A mask file, or the union of a folder's masks (LOCO) -> H×W bool of the image's size."""
    files = sorted(mask.glob("*.png")) if mask.is_dir() else [mask]
    out = np.zeros(shape, bool)
    for f in files:
        out |= load_mask(f, shape)
    return out


@dataclass
class _Scored:
    scores: list[float]
    types: list[str]
    maps: list[np.ndarray]          # only for items with masks or good ones
    masks: list[np.ndarray]
    map_types: list[str]
    ms: float


def _score_items(scorer, check: CategoryCheck, progress, skip) -> _Scored:
    out = _Scored([], [], [], [], [], 0.0)
    pixel = set(check.types_with_masks) | {"good"}
    for i, item in enumerate(check.items):
        try:
            rgb = load_rgb(item.path)
        except InspectError as e:
            skip(item.path, str(e))
            continue
        r = scorer.score([rgb])
        out.ms += r.latency_ms
        out.scores.append(float(r.scores[0]))
        out.types.append(item.defect_type)
        if item.defect_type in pixel:
            out.maps.append(r.maps[0])
            out.masks.append(np.zeros(rgb.shape[:2], bool) if item.mask is None
                             else load_mask_any(item.mask, rgb.shape[:2]))
            out.map_types.append(item.defect_type)
        progress(0.9 + 0.1 * (i + 1) / len(check.items), f"scored {i + 1}/{len(check.items)}")
    return out


def _metrics(s: _Scored, defect: str | None, threshold: float) -> dict:
    """Image and (where masks exist) pixel metrics for good + one defect type (None: all)."""
    from engine.metrics import au_pro, image_auroc, pixel_auroc
    types = np.array(s.types)
    sel = (types == "good") | ((types != "good") if defect is None else (types == defect))
    scores, labels = np.array(s.scores)[sel], types[sel] != "good"
    out = {"n_images": int(sel.sum()), "n_defective": int(labels.sum()),
           "image_auroc": image_auroc(scores, labels) if 0 < labels.sum() < labels.size else None,
           "miss_rate": float(np.mean(scores[labels] < threshold)) if labels.any() else None,
           "pixel_auroc": None, "au_pro": None}
    if defect is None:
        out["false_reject_rate"] = float(np.mean(scores[~labels] >= threshold))
    mt = np.array(s.map_types)
    msel = np.flatnonzero((mt == "good") | ((mt != "good") if defect is None else (mt == defect)))
    if (mt[msel] != "good").any():
        maps, masks = [s.maps[i] for i in msel], [s.masks[i] for i in msel]
        try:
            out["pixel_auroc"] = pixel_auroc(maps, masks)
            out["au_pro"] = au_pro(maps, masks)
        except ValueError:          # e.g. a defect type whose masks are all empty
            pass
    return out


def _file_mb(model, meta: dict) -> float:
    """The size of the model file this model makes, in MB (written to a scratch file)."""
    import tempfile
    from engine.model import save_checkpoint
    with tempfile.TemporaryDirectory(prefix="inspect-size-") as tmp:
        path = Path(tmp) / "model.pt"
        save_checkpoint(model, path, meta)
        return path.stat().st_size / 1e6


def file_sha256(path: str | Path) -> str | None:
    p = Path(path)
    if not p.is_file():
        return None
    return hashlib.sha256(p.read_bytes()).hexdigest()


def evaluate(check: CategoryCheck, cfg, progress=lambda f, m: None, skip=lambda p, m: None,
             save_model: str | None = None, model_file: str | None = None) -> dict:
    """Train on train/good (or load `model_file`), score every test image, and report image
    AUROC, pixel AUROC / AU-PRO where masks exist, and the false-reject and miss rates at
    the model's default threshold (overall and per defect type), next to the miss rate the
    synthetic defects predicted."""
    from engine.model import load_checkpoint, save_checkpoint
    from engine.scoring import Scorer
    from engine.train import TrainResult, train

    if model_file:                                   # evaluate a model trained before
        model, meta = load_checkpoint(model_file)
        result, train_s = TrainResult(model, meta), None
        cfg = replace(cfg, model=model.config, steps=int(meta.get("steps", cfg.steps)))
    else:
        good, _ = load_images(list_images(check.good_dir), skip)
        t0 = time.time()
        result = train(cfg, good, lambda f, m: progress(0.9 * f, m))
        train_s = time.time() - t0
    if save_model:
        save_checkpoint(result.model, save_model, result.meta)
    scorer = Scorer(result.model, result.meta, cfg.device, backend="auto")
    scored = _score_items(scorer, check, progress, skip)
    meta, thr = result.meta, float(result.meta["threshold"])
    overall = _metrics(scored, None, thr)
    return {
        "category": check.base.name, "steps": int(result.meta.get("steps", cfg.steps)),
        # the step whose state Learn kept (engine/selection.py); None: the last, by rule
        "selected_step": result.meta.get("selected_step"),
        "size": cfg.model.size,
        "kind": cfg.model.kind, "model": model_title(asdict(cfg.model)),
        "model_file_mb": (Path(save_model).stat().st_size / 1e6 if save_model   # written above
                          else _file_mb(result.model, result.meta)),
        "image_size": cfg.model.image_size, "tiling": cfg.model.tiling,
        "tile_scale": cfg.model.tile_scale, "roi": cfg.model.roi,
        **overall,
        "per_type": {t: _metrics(scored, t, thr) for t in sorted(set(scored.types) - {"good"})},
        "types_without_masks": list(check.types_without_masks),
        "threshold": thr, "threshold_rule": meta.get("threshold_rule"),
        "threshold_estimate": meta.get("threshold_estimate"),
        "synthetic_check": meta.get("synthetic_check"),
        "train_seconds": train_s, "train_minutes": None if train_s is None else train_s / 60,
        "ms_per_image": scored.ms / max(len(scored.scores), 1),
        "device": meta.get("device"), "seed": meta.get("train_config", {}).get("seed", cfg.seed),
        "teacher": meta.get("teacher"), "teacher_sha256": file_sha256(meta.get("teacher") or ""),
        "model_id": meta.get("model_id"), "app_version": app_version(),
        # every test image's score: any other threshold's rates can be read off afterwards
        "image_scores": [{"type": t, "score": x} for t, x in zip(scored.types, scored.scores)],
    }


def app_version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        v = version("inspect-line")
    except PackageNotFoundError:
        v = "unknown"
    commit = _git_commit()
    return f"{v}+{commit}" if commit else v


def _git_commit() -> str | None:
    head = Path(__file__).resolve().parent.parent / ".git" / "HEAD"
    try:
        ref = head.read_text().strip()
        if ref.startswith("ref: "):
            ref = (head.parent / ref[5:]).read_text().strip()
        return ref[:12]
    except OSError:
        return None
