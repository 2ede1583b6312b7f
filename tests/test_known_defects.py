"""The threshold from known defects: rates at every threshold and the proposal, checked
against counting by hand (engine/known_defects.py)."""
import numpy as np
import pytest

from engine.known_defects import curve, propose, rates_at
from engine.types import Decision, decide


def _by_hand(good, defects, t):
    fr = sum(decide(s, t) == Decision.FAIL for s in good)
    miss = sum(decide(s, t) == Decision.PASS for s in defects)
    return fr, miss


def test_rates_match_the_decision_rule_at_every_threshold():
    rng = np.random.default_rng(3)
    good, defects = rng.normal(0.3, 0.05, 60), rng.normal(0.5, 0.1, 15)
    c = curve(good, defects)
    assert np.all(np.diff(c.thresholds) > 0)
    for t, frr, miss in zip(c.thresholds, c.false_reject_rate, c.miss_rate):
        fr, m = _by_hand(good, defects, t)
        assert (frr, miss) == pytest.approx((fr / 60, m / 15))
        assert rates_at(good, defects, t) == pytest.approx((frr, miss))
    assert np.all(np.diff(c.false_reject_rate) <= 0) and np.all(np.diff(c.miss_rate) >= 0)


def test_the_proposal_meets_the_target_and_misses_the_fewest_defects():
    rng = np.random.default_rng(4)
    good, defects = rng.normal(0.3, 0.05, 200), rng.normal(0.42, 0.06, 40)   # overlapping
    for target in (0.0, 0.01, 0.05, 0.2):
        p = propose(good, defects, target)
        fr, miss = _by_hand(good, defects, p.threshold)
        assert (p.false_rejects, p.misses) == (fr, miss)
        assert p.met and fr <= target * 200
        # no threshold that meets the target misses fewer known defects
        best = min(_by_hand(good, defects, t)[1] for t in np.unique(np.r_[good, defects, np.inf])
                   if _by_hand(good, defects, t)[0] <= target * 200)
        assert miss == best
    # a looser target never misses more
    misses = [propose(good, defects, t).misses for t in (0.0, 0.01, 0.05, 0.2)]
    assert misses == sorted(misses, reverse=True) and misses[0] > misses[-1]


def test_separated_scores_put_the_threshold_in_the_gap():
    p = propose([0.1, 0.2, 0.3], [0.5, 0.9], 0.0)
    assert p.threshold == pytest.approx(0.4) and (p.false_rejects, p.misses) == (0, 0)
    assert "3 good parts" in p.sentence() and "few parts" in p.sentence()
    p = propose([0.1, 0.2, 0.3], [], 0.0)                 # no defect: a small margin
    assert 0.3 < p.threshold < 0.32 and p.n_defects == 0
    assert propose([], [0.5], 0.01) is None
    p = propose([0.1, float("nan"), 0.3], [float("inf"), 0.2], 0.0)   # non-finite left out
    assert p.n_good == 2 and p.n_defects == 1
