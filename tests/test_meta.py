"""ModelMeta: the one reader of a model file's meta dict; it never raises."""
import math

from hypothesis import HealthCheck, given, settings, strategies as st

from engine.meta import ModelMeta

ANY = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
                   lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
                   max_leaves=8)
KEYS = ["model_id", "threshold", "holdout_scores", "n_train", "n_holdout", "steps", "teacher",
        "train_seconds", "holdout_false_reject_rate", "threshold_estimate", "synthetic_check"]


@settings(max_examples=300, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(KEYS), ANY, max_size=len(KEYS)) | ANY)
def test_any_meta_reads_without_raising(d):
    m = ModelMeta.from_dict(d)
    assert math.isfinite(m.threshold) and all(math.isfinite(x) for x in m.holdout_scores)


def test_a_real_meta_reads_its_values():
    from engine.calibration import estimate_threshold
    est = estimate_threshold([0.1, 0.12, 0.11, 0.13, 0.1])
    m = ModelMeta.from_dict({"model_id": "abc", "threshold": est.threshold, "n_holdout": 5,
                             "holdout_scores": [0.1, 0.12, float("nan")], "teacher": "random",
                             "threshold_estimate": est.to_dict(), "synthetic_check": {"bad": 1}})
    assert m.model_id == "abc" and m.threshold == est.threshold and m.n_holdout == 5
    assert m.holdout_scores == (0.1, 0.12) and m.random_teacher
    assert m.estimate == est and m.synthetic is None
