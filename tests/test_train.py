import numpy as np
import pytest
import torch

from engine.errors import InspectError
from engine.metrics import image_auroc
from engine.model import ModelConfig
from engine.scoring import Scorer
from engine.train import (TrainConfig, TrainingCancelled, hard_feature_loss,
                          quantile, train)
from synthetic import make_part


def tiny_cfg(**kw):
    base = dict(model=ModelConfig(image_size=64), steps=40, teacher="random", penalty="none",
                device="cpu", checkpoint_every=10)
    base.update(kw)
    return TrainConfig(**base)


def parts(n, seed, defect=False):
    rng = np.random.default_rng(seed)
    return [make_part(rng, defect)[0] for _ in range(n)]


def test_hard_feature_loss_matches_quantile_definition():
    torch.manual_seed(0)
    d = torch.rand(1, 384, 20, 20)
    q = torch.quantile(d.flatten(), 0.999)
    ref = d[d >= q].mean()
    assert torch.isclose(hard_feature_loss(d, 0.999), ref, rtol=1e-3)


def test_quantile_beyond_torch_limit():
    x = torch.arange(2**24 + 10, dtype=torch.float32)       # older torch.quantile refuses this
    assert quantile(x, 0.9) == pytest.approx(float(np.quantile(x.numpy(), 0.9)), rel=1e-6)
    big = torch.rand(1, 1, 5000, 4000)
    assert hard_feature_loss(big, 0.999) > 0.998


def test_too_few_images_is_explained():
    with pytest.raises(InspectError, match="at least 5 good images"):
        train(tiny_cfg(), parts(3, 0))


def test_missing_teacher_is_explained(tmp_path):
    with pytest.raises(InspectError, match="--teacher random"):
        train(tiny_cfg(teacher=str(tmp_path / "nope.pth")), parts(8, 0))


def test_missing_penalty_folder_is_explained(tmp_path):
    with pytest.raises(InspectError, match="penalty"):
        train(tiny_cfg(penalty=str(tmp_path)), parts(8, 0))


def test_learns_synthetic_defects():
    """End to end on the CPU: good parts score below parts with blobs (AUROC >= 0.9)."""
    messages = []
    result = train(tiny_cfg(steps=80), parts(20, 0), lambda f, m: messages.append((f, m)))
    assert any("random teacher" in m for _, m in messages)
    assert messages[-1][0] == 1.0
    scorer = Scorer(result.model, result.meta, "cpu")
    good = scorer.score(parts(10, 1), with_maps=False).scores
    bad = scorer.score(parts(10, 2, defect=True), with_maps=False).scores
    auc = image_auroc(np.r_[good, bad], np.r_[np.zeros(10), np.ones(10)])
    assert auc >= 0.9, (good, bad)
    meta = result.meta
    assert meta["n_holdout"] == 5 and meta["n_train"] == 15      # a quarter, short of MIN_HOLDOUT
    assert len(meta["holdout_index"]) == 5
    assert meta["threshold"] > max(meta["holdout_scores"])
    est = meta["threshold_estimate"]
    assert est["threshold"] == meta["threshold"] and est["n_good"] == 5
    check = meta["synthetic_check"]                  # 16 of each kind by default
    assert check["n"] == 48 and set(check["by_kind"]) == {"cutpaste", "stain", "scratch"}
    assert check["threshold"] == meta["threshold"]
    assert float(result.model.q_st_b) > float(result.model.q_st_a)


def test_cancel_and_resume_gives_the_same_model(tmp_path):
    images = parts(10, 3)
    cfg = tiny_cfg(steps=30, precision="fp32")
    straight = train(cfg, images)
    resume = tmp_path / "run.partial.pt"
    calls = {"n": 0}

    def stop_after_17():
        calls["n"] += 1
        return calls["n"] > 17

    with pytest.raises(TrainingCancelled):
        train(cfg, images, should_stop=stop_after_17, resume_path=resume)
    assert resume.is_file()
    resumed = train(cfg, images, resume_path=resume)
    # the resume file stays until the caller has saved the model (then the caller deletes it)
    assert resumed.meta["resumed"] and resume.is_file()
    # ... so a save that failed costs nothing: the same call again only calibrates
    again = train(cfg, images, resume_path=resume)
    assert again.meta["resumed"] and again.meta["threshold"] == pytest.approx(resumed.meta["threshold"])
    for (k, a), (_, b) in zip(straight.model.state_dict().items(), resumed.model.state_dict().items()):
        assert torch.allclose(a, b, atol=1e-5), k


def test_resume_refuses_other_images(tmp_path):
    cfg = tiny_cfg(steps=20)
    resume = tmp_path / "run.partial.pt"
    with pytest.raises(TrainingCancelled):
        train(cfg, parts(8, 0), should_stop=lambda: True, resume_path=resume)
    with pytest.raises(InspectError, match="other settings or images"):
        train(cfg, parts(8, 1), resume_path=resume)


class StepClock:
    """A clock the test moves: each training step takes one second, each part the model
    maps takes `per_part` seconds; nothing else takes time."""

    def __init__(self, monkeypatch, per_part: float = 0.0):
        import engine.train as T
        from engine.model import EfficientAD
        self.now, self.lrs = 0.0, []
        step, raw_maps = T.train_step, EfficientAD.raw_maps

        def timed_step(model, opt, *a, **k):
            self.lrs.append(opt.param_groups[0]["lr"])
            self.now += 1.0
            return step(model, opt, *a, **k)

        def timed_maps(model, x):
            self.now += per_part * len(x)
            return raw_maps(model, x)
        monkeypatch.setattr(T, "train_step", timed_step)
        monkeypatch.setattr(EfficientAD, "raw_maps", timed_maps)

    def __call__(self) -> float:
        return self.now


def test_a_time_budget_stops_the_steps_and_drops_the_learning_rate(tmp_path, monkeypatch):
    """--minutes: the steps end when the budget is spent (the step count only caps it),
    the learning rate drops at 95% of the time, and the file says what happened."""
    resume = tmp_path / "run.partial.pt"
    clock = StepClock(monkeypatch)
    cfg = tiny_cfg(steps=10**6, minutes=1.0, precision="fp32")
    result = train(cfg, parts(8, 0), resume_path=resume, clock=clock)
    meta = result.meta
    assert meta["steps"] == 60 and meta["stopped_by"] == "time" and meta["minutes"] == 1.0
    assert clock.lrs == [cfg.lr] * 57 + [pytest.approx(0.1 * cfg.lr)] * 3
    state = torch.load(resume, weights_only=True)          # kept until the caller saves
    assert state["step"] == 60 and state["budget_s"] == 60.0 and state["elapsed_s"] == 60.0
    assert state["optimizer"]["param_groups"][0]["lr"] == pytest.approx(0.1 * cfg.lr)
    with pytest.raises(InspectError, match="positive number of minutes"):
        tiny_cfg(minutes=float("nan"))


@pytest.mark.parametrize("per_part", [0.05, 0.2])
def test_calibration_after_the_steps_is_inside_the_time_budget(monkeypatch, per_part):
    """The steps leave room for what comes after them: however long the model takes per
    part, the whole Learn (selection checks, held-out maps, synthetic defects) takes its
    minutes, no more (give or take the one step that begins before the end) and not
    much less (the room kept is what those take, measured on the model, not a guess)."""
    clock = StepClock(monkeypatch, per_part)
    cfg = tiny_cfg(steps=10**6, minutes=2.0, precision="fp32", reduced_paths=False)
    result = train(cfg, parts(20, 0), clock=clock)
    assert 120.0 - 2.0 <= clock() <= 120.0 + 1.0
    assert result.meta["steps"] >= 20 and result.meta["stopped_by"] == "time"


def test_a_budget_mostly_spent_on_the_checks_says_so(monkeypatch):
    """When checking the model after the steps would take most of the minutes, Learn says
    how long that takes and how little is left to train, in words, before it trains."""
    clock = StepClock(monkeypatch, per_part=0.6)
    said = []
    cfg = tiny_cfg(steps=10**6, minutes=1.0, precision="fp32", reduced_paths=False)
    train(cfg, parts(20, 0), progress=lambda f, m: said.append(m), clock=clock)
    warning = [m for m in said if m.startswith("WARNING: checking the model")]
    assert len(warning) == 1 and "give Learn more time" in warning[0]
    assert said.index(warning[0]) < min(i for i, m in enumerate(said) if m.startswith("step "))


def test_one_training_step_alone():
    """train_step(batch) -> the four loss terms; repeated on one batch they fall; a batch
    that makes the loss NaN is refused before any weight changes."""
    from engine.model import EfficientAD
    from engine.train import make_optimizer, train_step
    torch.manual_seed(0)
    cfg = tiny_cfg(steps=100)
    model = EfficientAD(cfg.model)
    opt, sched = make_optimizer(model, cfg)
    x = model.normalize_image(torch.rand(1, 3, 64, 64))
    batch = (x, x.clone(), None)
    first = train_step(model, opt, sched, batch, cfg.p_hard, bf16=False)
    assert len(first) == 4 and first[1] == 0.0                # no penalty image, no penalty
    for _ in range(15):
        last = train_step(model, opt, sched, batch, cfg.p_hard, bf16=False)
    assert sum(last) < 0.8 * sum(first)
    before = [p.clone() for p in model.student.parameters()]
    with pytest.raises(FloatingPointError):
        train_step(model, opt, sched, (x * float("nan"), x, None), cfg.p_hard, bf16=False)
    assert all(torch.equal(a, b) for a, b in zip(before, model.student.parameters()))
