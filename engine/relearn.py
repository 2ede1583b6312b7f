"""Relearn from labels: the product's current good set plus every part an operator marked
a false reject (their pictures from the log) trains a new version; both versions then score
the labelled parts side by side (false rejects should now pass, confirmed defects still
fail) before the engineer accepts or discards the new one.

    rs = collect(log, product, active_version)                     # on a worker: reads pictures
    out = run(RelearnJob(cfg, rs, current_path, threshold, pending), progress, should_stop)
    version = accept(log, out, final_path, trained_by)            # or discard(out)

Training is `engine.train.train` itself (the same budget, teacher and threshold rule as
Learn). No Qt here; the values that cross threads are frozen dataclasses and arrays.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.errors import InspectError
from engine.meta import ModelMeta
from engine.versions import (ModelVersion, good_set_dir, load_good_set, register,
                             save_good_set, version_of)

FALSE_REJECT_SHARE = 0.2      # false rejects repeated to make at least this share of the set
MAX_REPEAT = 5                # ... but no single picture more than this many times
MAX_LOG_GOOD = 200            # good pictures taken from the log when a version kept none


@dataclass(frozen=True, eq=False)
class LabelledPart:
    inspection_id: int
    label: str                    # engine.log.Label value
    image: np.ndarray
    score: float                  # as logged
    model_id: str                 # the version that judged it


@dataclass(frozen=True, eq=False)
class RelearnSet:
    product: str
    good: tuple[np.ndarray, ...]
    good_source: str                          # in words, for the screen and the version
    false_rejects: tuple[LabelledPart, ...]
    defects: tuple[LabelledPart, ...]
    new_false_rejects: int                    # not yet learned by the active version
    parent: str = ""                          # the active version's id
    unreadable: int = 0                       # labelled rows whose picture is gone

    def problem(self) -> str | None:
        """Why relearning cannot start (one sentence), or None."""
        if not self.false_rejects:
            return (f"No part of {self.product} is marked as a false reject with its picture in "
                    "the log: mark false rejects in History first.")
        if len(self.good) < 5:
            return (f"Only {len(self.good)} good pictures of {self.product} were found (the "
                    "active version kept none, and the log holds few PASS pictures): Learn "
                    "good parts again instead.")
        return None


def _labelled(log, product: str, label: str, limit: int) -> tuple[list[LabelledPart], int]:
    from engine.data import load_rgb
    from engine.log import InspectionFilter, PictureState
    parts, missing = [], 0
    for row in log.iter_rows(InspectionFilter(products=(product,), labels=(label,))):
        if len(parts) >= limit:
            break
        if row.image_path is None or row.picture_state not in (None, PictureState.OK):
            missing += 1
            continue
        try:
            image = load_rgb(row.image_path)
        except (InspectError, OSError):
            missing += 1
            continue
        parts.append(LabelledPart(row.id, label, image, float(row.score), row.model_id))
    return parts, missing


def _log_good(log, product: str, limit: int) -> list[np.ndarray]:
    """PASS pictures nobody labelled: the line's own good parts."""
    from engine.data import load_rgb
    from engine.log import UNLABELED, InspectionFilter
    out = []
    for row in log.iter_rows(InspectionFilter(products=(product,), verdicts=("PASS",),
                                              labels=(UNLABELED,))):
        if len(out) >= limit:
            break
        if row.image_path is not None and row.image_path.is_file():
            try:
                out.append(load_rgb(row.image_path))
            except InspectError:
                continue
    return out


def collect(log, product: str, active: ModelVersion | None, limit: int = 500) -> RelearnSet:
    """The good set (the active version's own pictures, else the log's PASS pictures) and
    every labelled part of the product with its picture. Reads files: call on a worker."""
    good = load_good_set(active.good_set) if active is not None and active.good_set else []
    source = f"the {len(good)} good pictures version {active.model_id} learned from" if good else ""
    if not good:
        good = _log_good(log, product, MAX_LOG_GOOD)
        source = f"{len(good)} good (PASS, unlabelled) pictures from the log"
    frs, missing_fr = _labelled(log, product, "false_reject", limit)
    defects, missing_d = _labelled(log, product, "confirmed_defect", limit)
    learned = set(active.labels_used) if active is not None else set()
    return RelearnSet(product=product, good=tuple(good), good_source=source,
                      false_rejects=tuple(frs), defects=tuple(defects),
                      new_false_rejects=sum(p.inspection_id not in learned for p in frs),
                      parent=active.model_id if active is not None else "",
                      unreadable=missing_fr + missing_d)


def training_images(rs: RelearnSet) -> list[np.ndarray]:
    """The good set, then each false reject repeated so that the few of them are not lost
    among many good pictures (a student network sees each picture about as often)."""
    n_fr = len(rs.false_rejects)
    repeat = 1
    if n_fr:
        want = FALSE_REJECT_SHARE * len(rs.good) / (1 - FALSE_REJECT_SHARE)
        repeat = int(min(MAX_REPEAT, max(1, round(want / n_fr))))
    return list(rs.good) + [p.image for p in rs.false_rejects for _ in range(repeat)]


# ---- the background job ------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class RelearnJob:
    cfg: object                  # engine.train.TrainConfig (its model config: the active one's)
    rs: RelearnSet
    current_path: str            # the active version's file
    current_threshold: float     # the threshold the line uses now
    pending_path: str            # where the new model is written until accepted
    device: str = "cpu"


@dataclass(frozen=True, eq=False)
class SideBySide:
    """Both versions on the labelled parts, each at its own threshold."""
    ids: tuple[int, ...]
    labels: tuple[str, ...]
    current_scores: np.ndarray
    new_scores: np.ndarray
    current_threshold: float
    new_threshold: float
    current_holdout: tuple[float, ...]
    new_holdout: tuple[float, ...]

    def _count(self, label: str, scores: np.ndarray, threshold: float, failing: bool) -> int:
        mask = np.array([lab == label for lab in self.labels], bool)
        if not mask.any():
            return 0
        fails = scores[mask] >= threshold        # engine.types.decide: FAIL at or above
        return int(fails.sum() if failing else (~fails).sum())

    def false_rejects_passing(self, new: bool) -> int:
        s, t = (self.new_scores, self.new_threshold) if new else (self.current_scores, self.current_threshold)
        return self._count("false_reject", s, t, failing=False)

    def defects_failing(self, new: bool) -> int:
        s, t = (self.new_scores, self.new_threshold) if new else (self.current_scores, self.current_threshold)
        return self._count("confirmed_defect", s, t, failing=True)

    @property
    def n_false_rejects(self) -> int:
        return sum(lab == "false_reject" for lab in self.labels)

    @property
    def n_defects(self) -> int:
        return sum(lab == "confirmed_defect" for lab in self.labels)

    def holdout_frr(self, new: bool) -> float | None:
        s = np.asarray(self.new_holdout if new else self.current_holdout, dtype=np.float64)
        t = self.new_threshold if new else self.current_threshold
        return float(np.mean(s >= t)) if s.size else None

    def sentence(self) -> str:
        def part(new: bool) -> str:
            frr = self.holdout_frr(new)
            return (f"{self.false_rejects_passing(new)} of {self.n_false_rejects} false rejects "
                    f"pass, {self.defects_failing(new)} of {self.n_defects} confirmed defects "
                    f"fail" + ("" if frr is None else f", {100 * frr:.0f} % of its held-out good "
                                                       "parts rejected"))
        worse = self.defects_failing(True) < self.defects_failing(False)
        return (f"Current version: {part(False)}. New version: {part(True)}."
                + (" The new version misses confirmed defects the current one catches: check "
                   "before accepting." if worse else ""))


@dataclass(frozen=True, eq=False)
class RelearnOutcome:
    pending_path: str
    meta: ModelMeta
    compared: SideBySide
    rs: RelearnSet
    n_images: int                 # training pictures, repeats included


def _scores(model, meta: dict, images: list[np.ndarray], device: str) -> np.ndarray:
    from engine.scoring import Scorer
    if not images:
        return np.zeros(0)
    scorer = Scorer(model, meta, device=device, backend="eager")
    return np.asarray([float(scorer.score([im], with_maps=False).scores[0]) for im in images])


def compare(current: tuple, new: tuple, rs: RelearnSet, current_threshold: float,
            device: str = "cpu") -> SideBySide:
    """current, new: (model, meta dict) each. Scores every labelled part with both."""
    parts = list(rs.false_rejects) + list(rs.defects)
    images = [p.image for p in parts]
    new_meta = ModelMeta.from_dict(new[1])
    return SideBySide(ids=tuple(p.inspection_id for p in parts),
                      labels=tuple(p.label for p in parts),
                      current_scores=_scores(*current, images, device),
                      new_scores=_scores(*new, images, device),
                      current_threshold=float(current_threshold),
                      new_threshold=float(new_meta.threshold),
                      current_holdout=ModelMeta.from_dict(current[1]).holdout_scores,
                      new_holdout=new_meta.holdout_scores)


def run(job: RelearnJob, progress=lambda f, m: None, should_stop=lambda: False) -> RelearnOutcome:
    """Train the new version (engine.train.train), write it to the pending file, score
    the labelled parts with both versions."""
    from engine.model import load_checkpoint, save_checkpoint
    from engine.train import train
    problem = job.rs.problem()
    if problem:
        raise InspectError(problem)
    current = load_checkpoint(job.current_path)
    images = training_images(job.rs)
    result = train(job.cfg, images, lambda f, m: progress(0.9 * f, m), should_stop)
    progress(0.92, "scoring the labelled parts with both versions")
    compared = compare(current, (result.model, result.meta), job.rs, job.current_threshold,
                       job.device)
    meta = dict(result.meta)
    meta["relearned_from"] = job.rs.parent
    meta["labels_used"] = [p.inspection_id for p in job.rs.false_rejects]
    pending = Path(job.pending_path)
    pending.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(result.model, pending, meta)
    progress(1.0, "done")
    return RelearnOutcome(str(pending), ModelMeta.from_dict(meta), compared, job.rs, len(images))


def accept(log, out: RelearnOutcome, final_path: str | Path, trained_by: str) -> ModelVersion:
    """Keep the new version: its file under its final name, the pictures it learned from
    (good set + false rejects, named by their log row) beside it, and the version with the
    labels it used registered in the log. Activating it is the caller's (settings)."""
    final = Path(final_path)
    Path(out.pending_path).replace(final)
    rs = out.rs
    folder = good_set_dir(final)
    save_good_set(folder, list(rs.good), [f"good-{i:05d}" for i in range(len(rs.good))])
    save_good_set(folder, [p.image for p in rs.false_rejects],
                  [f"false-reject-{p.inspection_id}" for p in rs.false_rejects])
    ids = [p.inspection_id for p in rs.false_rejects]
    summary = (f"{rs.good_source} + {len(ids)} false rejects from the log "
               f"(rows {', '.join(map(str, ids[:12]))}{' …' if len(ids) > 12 else ''})")
    version = version_of(out.meta, final.resolve(), rs.product, trained_by, training_set=summary,
                         good_set=str(folder.resolve()), labels_used=ids, parent=rs.parent)
    register(log, version)
    return version


def discard(out: RelearnOutcome) -> None:
    Path(out.pending_path).unlink(missing_ok=True)


def forget_good_set(model_path: str | Path) -> None:
    """Remove a version's kept pictures (with its file, when an engineer deletes it)."""
    shutil.rmtree(good_set_dir(model_path), ignore_errors=True)
