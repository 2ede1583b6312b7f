"""The threshold from known defects: with confirmed defects in the log, every threshold has a
false-reject rate (good parts failed) and a miss rate (known defects passed); propose the
lowest-miss threshold whose false-reject rate meets the engineer's target.

A part FAILs at score >= threshold (engine.types.decide), so at threshold t
    false rejects = good scores >= t,   misses = defect scores < t.
Raising t trades false rejects for misses; both counts only change at observed scores, so
the candidates are the observed scores themselves (each just passed or just failed).
No Qt; plain numpy, testable alone.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class RateCurve:
    """Rates at each candidate threshold (ascending)."""
    thresholds: np.ndarray
    false_reject_rate: np.ndarray
    miss_rate: np.ndarray


@dataclass(frozen=True)
class Proposal:
    threshold: float
    target_frr: float
    false_rejects: int            # of n_good at the proposed threshold
    misses: int                   # of n_defects
    n_good: int
    n_defects: int
    met: bool                     # False: no threshold meets the target on these parts

    @property
    def false_reject_rate(self) -> float:
        return self.false_rejects / self.n_good if self.n_good else 0.0

    @property
    def miss_rate(self) -> float:
        return self.misses / self.n_defects if self.n_defects else 0.0

    def sentence(self) -> str:
        few = (" These are few parts: each one moves the rates a lot, so check again once "
               "more are labelled." if self.n_good < 30 or self.n_defects < 5 else "")
        return (f"Proposed threshold {self.threshold:.4f}: {self.false_rejects} of "
                f"{self.n_good} good parts rejected ({100 * self.false_reject_rate:.1f} %, target "
                f"{100 * self.target_frr:.1f} %), {self.misses} of {self.n_defects} confirmed "
                f"defects missed ({100 * self.miss_rate:.0f} %)."
                + ("" if self.met else " No threshold meets the target on these parts; this "
                   "one rejects the fewest good parts.") + few)


def _clean(a) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64).ravel()
    return a[np.isfinite(a)]


def rates_at(good, defects, threshold: float) -> tuple[float, float]:
    """(false-reject rate, miss rate) at one threshold."""
    g, d = _clean(good), _clean(defects)
    frr = float(np.mean(g >= threshold)) if g.size else 0.0
    miss = float(np.mean(d < threshold)) if d.size else 0.0
    return frr, miss


def curve(good, defects) -> RateCurve:
    """Both rates at every observed score (the only places they change), ascending."""
    g, d = np.sort(_clean(good)), np.sort(_clean(defects))
    t = np.unique(np.concatenate([g, d]))
    # counts by binary search: good >= t fails, defect < t passes
    frr = (g.size - np.searchsorted(g, t, side="left")) / max(g.size, 1)
    miss = np.searchsorted(d, t, side="left") / max(d.size, 1)
    return RateCurve(t, frr.astype(np.float64), miss.astype(np.float64))


def propose(good, defects, target_frr: float) -> Proposal | None:
    """The threshold meeting `target_frr` on the good scores that misses the fewest known
    defects, placed midway in the gap above the highest good score it must pass (margin
    both ways: the same counts, further from every part). None without good scores."""
    g, d = np.sort(_clean(good))[::-1], np.sort(_clean(defects))
    if not g.size:
        return None
    allowed = int(math.floor(target_frr * g.size + 1e-9))      # good parts that may fail
    met = allowed < g.size
    allowed = min(allowed, g.size - 1)
    lo = float(g[allowed])                         # the highest good score that must pass
    hi = float(g[allowed - 1]) if allowed > 0 else math.inf   # the lowest that may fail
    above = d[d > lo]
    upper = min(hi, float(above[0])) if above.size else hi
    if math.isfinite(upper):
        t = (lo + upper) / 2
    else:                                          # nothing above: a small margin over it
        t = lo + max(abs(lo) * 0.05, 1e-6)
    if not t > lo:                                 # lo == upper up to rounding
        t = math.nextafter(lo, math.inf)
    false_rejects = int(np.sum(g >= t))
    misses = int(np.sum(d < t))
    return Proposal(float(t), float(target_frr), false_rejects, misses, int(g.size), int(d.size),
                    met and false_rejects <= target_frr * g.size + 1e-9)


@dataclass(frozen=True, eq=False)
class KnownScores:
    """What the log knows of one version's scores on the product's parts."""
    good: np.ndarray              # unlabelled PASS parts and marked false rejects (good parts)
    defects: np.ndarray           # confirmed defects
    false_rejects: int            # of `good`, marked false rejects
    other_versions: int           # confirmed defects judged by another version (not comparable)


def scores_from_log(log, product: str, model_id: str, limit: int = 20000) -> KnownScores:
    """The scores `model_id` gave the product's parts (oldest first, up to `limit` of each).
    Scores of other versions are on another scale and are only counted."""
    from engine.log import UNLABELED, InspectionFilter

    def scores(**kw) -> list[float]:
        out = []
        for row in log.iter_rows(InspectionFilter(products=(product,), model_ids=(model_id,), **kw)):
            out.append(float(row.score))
            if len(out) >= limit:
                break
        return out
    passed = scores(verdicts=("PASS",), labels=(UNLABELED,))
    false_rejects = scores(labels=("false_reject",))
    defects = scores(labels=("confirmed_defect",))
    every = log.count(InspectionFilter(products=(product,), labels=("confirmed_defect",)))
    return KnownScores(np.asarray(passed + false_rejects, dtype=np.float64),
                       np.asarray(defects, dtype=np.float64), len(false_rejects),
                       max(0, every - len(defects)))
