"""Staged Learn: which of two models of one product should judge the line.

Learn builds the quick model first (about a minute: the line runs at once), then trains
EfficientAD behind it. Both were calibrated on the same held-out good parts (the same split
of the same images) and checked against the same kinds of synthetic defects, so their
results can be set side by side without any real defect:

  * better = fewer synthetic defects missed at its own threshold; when those differ by no
    more than MISS_TIE, the one whose synthetic defects stand further apart from the good
    parts (AUROC of synthetic vs held-out good scores) — unless that also ties (SEP_TIE);
  * a tie goes to the faster model (scoring ms per part, measured on this PC), or to the
    kind the caller prefers on a tie (EfficientAD on a GPU, where it is the ms-class model);
  * the engineer can pin either kind; the comparison is still shown.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.meta import ModelMeta

MISS_TIE = 0.05          # miss rates this close are the same result on 48 synthetic defects
SEP_TIE = 0.01
KIND_NAMES = {"quick": "quick model", "efficientad": "EfficientAD"}


@dataclass(frozen=True)
class Candidate:
    kind: str                       # "quick" | "efficientad"
    meta: ModelMeta
    ms_per_part: float              # scoring time on this PC


@dataclass(frozen=True)
class Choice:
    kind: str                       # the kind that should be live
    reason: str                     # one sentence
    rows: tuple[tuple[str, str, str, str, str], ...]   # kind, threshold, misses, separation, ms

    def text(self) -> str:
        lines = [f"{k}: threshold {t}, synthetic misses {m}, separation {s}, {ms} per part"
                 for k, t, m, s, ms in self.rows]
        return "; ".join(lines) + ". " + self.reason


def separation(meta: ModelMeta) -> float | None:
    """AUROC of the synthetic defects' scores against the held-out good parts' scores."""
    if meta.synthetic is None or not meta.holdout_scores:
        return None
    from engine.selection import separation as apart
    bad = np.asarray(meta.synthetic.scores, dtype=np.float64)
    bad = bad[np.isfinite(bad)]
    if bad.size == 0:
        return None
    return apart(np.asarray(meta.holdout_scores, dtype=np.float64), bad)[0]


def choose(a: Candidate, b: Candidate, pin: str | None = None,
           prefer_on_tie: str | None = None) -> Choice:
    """The kind that should judge the line, and why (see the module's rule)."""
    rows = tuple(_row(c) for c in (a, b))
    by_kind = {c.kind: c for c in (a, b)}
    if pin in by_kind:
        return Choice(pin, f"The {KIND_NAMES[pin]} is pinned by the engineer.", rows)
    ma, mb = _miss(a), _miss(b)
    if ma is not None and mb is not None and abs(ma - mb) > MISS_TIE:
        best = a if ma < mb else b
        return Choice(best.kind, f"The {KIND_NAMES[best.kind]} misses fewer synthetic defects.", rows)
    sa, sb = separation(a.meta), separation(b.meta)
    if sa is not None and sb is not None and abs(sa - sb) > SEP_TIE:
        best = a if sa > sb else b
        return Choice(best.kind, f"The {KIND_NAMES[best.kind]} sets synthetic defects further "
                                 "apart from the good parts.", rows)
    if prefer_on_tie in by_kind:
        return Choice(prefer_on_tie, f"Both detect alike; the {KIND_NAMES[prefer_on_tie]} is "
                                     "preferred on this PC.", rows)
    fast = a if a.ms_per_part <= b.ms_per_part else b
    return Choice(fast.kind, f"Both detect alike; the {KIND_NAMES[fast.kind]} is faster here.", rows)


def _miss(c: Candidate) -> float | None:
    syn = c.meta.synthetic
    return None if syn is None or syn.n == 0 else syn.miss_rate


def _row(c: Candidate) -> tuple[str, str, str, str, str]:
    miss, sep = _miss(c), separation(c.meta)
    return (KIND_NAMES.get(c.kind, c.kind), f"{c.meta.threshold:.4f}",
            "n/a" if miss is None else f"{miss:.0%}", "n/a" if sep is None else f"{sep:.3f}",
            f"{c.ms_per_part:.0f} ms")
