"""engine/selection.py: training keeps the best of a few held-out checks, not the last."""
import numpy as np
import torch

from engine.model import ModelConfig
from engine.selection import CHECK_AT, Selector, separation
from engine.train import TrainConfig, train
from synthetic import make_part


def test_separation_ranks_by_auroc_then_margin():
    good = np.array([0.1, 0.2, 0.3])
    assert separation(good, np.array([0.5, 0.6]))[0] == 1.0
    assert separation(good, np.array([0.15, 0.6]))[0] < 1.0
    assert separation(good, np.array([0.9]))[1] > separation(good, np.array([0.5]))[1]


def test_due_fires_once_per_point_even_when_points_are_skipped():
    sel = Selector(torch.zeros(0), torch.zeros(0))
    fired = [f for f in np.linspace(0, 1, 101) if sel.due(f)]
    assert len(fired) == len(CHECK_AT)
    sel2 = Selector(torch.zeros(0), torch.zeros(0))
    assert sel2.due(0.95) and not sel2.due(0.96) and sel2.due(1.0)   # 0.5, 0.7, 0.9 at once


def test_training_records_its_checks_and_restores_the_best_state(monkeypatch):
    rng = np.random.default_rng(0)
    goods = [make_part(rng)[0] for _ in range(12)]
    cfg = TrainConfig(model=ModelConfig(image_size=64), steps=20, teacher="random", penalty="none",
                      device="cpu", synthetic_per_kind=2)
    # make the check at step 10 the best one: the restored weights must then be step 10's
    import engine.selection as sel_mod
    real = sel_mod.separation
    monkeypatch.setattr(sel_mod, "separation",
                        lambda g, b: (1.0, 0.0) if len(seen) == 0 else (0.5, 0.0))
    seen = []
    orig_check = sel_mod.Selector.check

    def check(self, model, step, device):
        out = orig_check(self, model, step, device)
        seen.append({k: v.clone() for k, v in model.student.state_dict().items()})
        return out
    monkeypatch.setattr(sel_mod.Selector, "check", check)
    res = train(cfg, goods)
    steps = [h[0] for h in res.meta["selection"]]
    assert steps == [10, 14, 18, 20] and res.meta["selected_step"] == 10
    for k, v in res.model.student.state_dict().items():
        assert torch.equal(v, seen[0][k])                 # step 10's student, not step 20's
    assert not torch.equal(seen[0][next(iter(seen[0]))], seen[-1][next(iter(seen[-1]))])
    monkeypatch.setattr(sel_mod, "separation", real)
    off = train(TrainConfig(**{**cfg.__dict__, "select_best": False}), goods)
    assert off.meta["selection"] == [] and off.meta["selected_step"] == 20


def test_a_resume_file_carries_the_best_state_and_a_damaged_one_is_one_sentence(tmp_path):
    import pytest
    from engine.errors import InspectError
    from engine.train import TrainingCancelled
    rng = np.random.default_rng(1)
    goods = [make_part(rng)[0] for _ in range(10)]
    cfg = TrainConfig(model=ModelConfig(image_size=64), steps=20, teacher="random", penalty="none",
                      device="cpu", synthetic_per_kind=0)
    resume = tmp_path / "r.partial.pt"
    calls = {"n": 0}
    with pytest.raises(TrainingCancelled):
        train(cfg, goods, should_stop=lambda: (calls.__setitem__("n", calls["n"] + 1) or calls["n"] > 12),
              resume_path=resume)
    state = torch.load(resume, weights_only=True)
    assert [h[0] for h in state["selection"]["history"]] == [10] and state["selection"]["best_state"]
    key = next(iter(state["selection"]["best_state"]))
    state["selection"]["best_state"][key] = torch.zeros(3)
    torch.save(state, resume)
    with pytest.raises(InspectError, match="best state does not fit the model"):
        train(cfg, goods, resume_path=resume)


def test_one_pass_scores_equal_the_scorers():
    """The check (and calibration) scores the good parts from the raw maps that gave their
    quantiles (one pass through the networks): the same numbers as scoring them again."""
    from engine.model import EfficientAD, ModelConfig
    from engine.train import _holdout_scores, raw_holdout_maps, scores_from_maps, set_map_quantiles
    torch.manual_seed(0)
    model = EfficientAD(ModelConfig(image_size=64)).eval()
    x = torch.randint(0, 256, (5, 3, 64, 64), dtype=torch.uint8)
    with torch.no_grad():
        m_st, m_ae = raw_holdout_maps(model, x, torch.device("cpu"))
        set_map_quantiles(model, m_st, m_ae, 0.9, 0.995)
        np.testing.assert_allclose(scores_from_maps(model, m_st, m_ae),
                                   _holdout_scores(model, x, torch.device("cpu")), rtol=1e-5)
