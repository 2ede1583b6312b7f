"""engine/staged.py: which of the two models of a staged Learn judges the line."""
from engine.meta import ModelMeta
from engine.staged import Candidate, choose, separation
from engine.synthetic import SyntheticCheck


def _meta(good, bad, threshold):
    missed = sum(s < threshold for s in bad)
    syn = SyntheticCheck(threshold, len(bad), missed, (("stain", len(bad), missed),),
                         tuple(bad), ("stain",) * len(bad))
    return ModelMeta(threshold=threshold, holdout_scores=tuple(good), synthetic=syn)


GOOD = [0.1, 0.12, 0.11, 0.13, 0.09]


def test_fewer_misses_wins_even_when_slower():
    quick = Candidate("quick", _meta(GOOD, [0.5] * 20, 0.2), 40.0)
    ead = Candidate("efficientad", _meta(GOOD, [0.5] * 10 + [0.15] * 10, 0.2), 300.0)
    c = choose(quick, ead)
    assert c.kind == "quick" and "misses fewer" in c.reason
    assert c.rows[0][2] == "0%" and c.rows[1][2] == "50%"
    c = choose(Candidate("quick", ead.meta, 40.0), Candidate("efficientad", quick.meta, 300.0))
    assert c.kind == "efficientad"


def test_same_misses_then_separation_then_speed_then_preference():
    a = Candidate("quick", _meta(GOOD, [0.5] * 20, 0.2), 40.0)
    b = Candidate("efficientad", _meta(GOOD, [0.5] * 19 + [0.105], 0.1), 300.0)  # 1 below most good
    assert separation(a.meta) == 1.0 and separation(b.meta) < 0.99
    assert choose(a, b).kind == "quick" and "further apart" in choose(a, b).reason
    tie = Candidate("efficientad", _meta(GOOD, [0.5] * 20, 0.2), 300.0)
    assert choose(a, tie).kind == "quick" and "faster" in choose(a, tie).reason
    assert choose(a, tie, prefer_on_tie="efficientad").kind == "efficientad"


def test_a_pin_wins_and_no_synthetic_check_falls_back_to_speed():
    a = Candidate("quick", _meta(GOOD, [0.5] * 20, 0.2), 40.0)
    b = Candidate("efficientad", _meta(GOOD, [0.15] * 20, 0.2), 300.0)
    assert choose(a, b, pin="efficientad").kind == "efficientad"
    bare = [Candidate("quick", ModelMeta(threshold=0.2), 50.0),
            Candidate("efficientad", ModelMeta(threshold=0.2), 20.0)]
    c = choose(*bare)
    assert c.kind == "efficientad" and c.rows[0][2] == "n/a" and "faster" in c.reason
