"""The quick model (engine/quick.py): built in one pass, scored through the same Scorer,
layout, calibration and checkpoint rules as EfficientAD."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from engine import quick
from engine.errors import InspectError
from engine.model import ModelConfig, load_checkpoint, save_checkpoint
from engine.scoring import Scorer
from engine.train import TrainConfig, train
from synthetic import make_part


def _cfg(image_size: int = 96, **model) -> TrainConfig:
    # 96 px = the parts' own size: the blob then lies inside the cells the map is made of
    return TrainConfig(model=ModelConfig(kind="quick", image_size=image_size, bank_size=400, **model),
                       synthetic_per_kind=2, penalty="none")


@pytest.fixture(scope="module")
def learned():
    rng = np.random.default_rng(0)
    goods = [make_part(rng)[0] for _ in range(12)]
    return train(_cfg(), goods)


def test_learns_without_steps_and_calibrates_like_efficientad(learned):
    meta = learned.meta
    assert meta["kind"] == "quick" and meta["steps"] == 0
    assert meta["bank_rows"] == 400 and learned.model.bank.shape == (400, 152)
    assert np.isfinite(meta["threshold"]) and meta["n_holdout"] >= 2
    assert meta["synthetic_check"]["n"] == 6
    # the held-out maps were scaled: q_b above q_a, and the good parts score near 0.1
    assert float(learned.model.q_st_b) > float(learned.model.q_st_a)


def test_defects_score_above_good_parts(learned):
    rng = np.random.default_rng(5)
    scorer = Scorer(learned.model, learned.meta, device="cpu", backend="auto")
    good = scorer.score([make_part(rng)[0] for _ in range(6)]).scores
    bad_parts = [make_part(rng, defect=True) for _ in range(6)]
    res = scorer.score([p[0] for p in bad_parts])
    assert res.scores.min() > good.max()
    # the map points at the defect: its hottest pixel lies inside the blob (± a cell)
    for (im, mask), m in zip(bad_parts, res.maps):
        assert m.shape == im.shape[:2]
        y, x = np.unravel_index(np.argmax(m), m.shape)
        ys, xs = np.nonzero(mask)
        assert ys.min() - 8 <= y <= ys.max() + 8 and xs.min() - 8 <= x <= xs.max() + 8
        assert m[mask].mean() > 3 * m[~mask].mean()


def test_checkpoint_round_trip_scores_the_same(learned, tmp_path):
    path = tmp_path / "quick.pt"
    save_checkpoint(learned.model, path, learned.meta)
    ckpt = torch.load(path, weights_only=True)
    assert ckpt["format"] == "inspect-line/quick" and ckpt["config"]["kind"] == "quick"
    assert not any(k.startswith("backbone.net._fc") for k in ckpt["state_dict"])   # cut head
    model, meta = load_checkpoint(path)
    im = make_part(np.random.default_rng(9), defect=True)[0]
    a = Scorer(learned.model, learned.meta, device="cpu").score([im]).scores
    b = Scorer(model, meta, device="cpu").score([im]).scores
    np.testing.assert_allclose(a, b, rtol=1e-5)


def test_damaged_quick_file_is_one_sentence(learned, tmp_path):
    path = tmp_path / "quick.pt"
    save_checkpoint(learned.model, path, learned.meta)
    ckpt = torch.load(path, weights_only=True)
    ckpt["state_dict"]["bank"][3, 3] = float("nan")
    torch.save(ckpt, path)
    with pytest.raises(InspectError, match="damaged: bank holds values that are not finite"):
        load_checkpoint(path)
    ckpt["state_dict"].pop("bank")
    torch.save(ckpt, path)
    with pytest.raises(InspectError, match="no memory bank"):
        load_checkpoint(path)


def test_fast_backends_are_refused_for_a_quick_model(learned):
    with pytest.raises(InspectError, match="for EfficientAD models"):
        Scorer(learned.model, learned.meta, device="cpu", backend="torch-fp32-nnpack")


def test_greedy_coreset_keeps_the_rare_patch():
    # 500 near-identical patches and one unlike them: a random 5 would miss it, k-centre never
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(501, 152, generator=g) * 0.01
    feats[317] += 5.0
    idx = quick.greedy_coreset(feats, 5, seed=1)
    assert 317 in idx.tolist() and len(set(idx.tolist())) == 5


def test_tiling_and_roi_work_as_for_efficientad():
    rng = np.random.default_rng(1)
    goods = [make_part(rng, size=128)[0] for _ in range(10)]
    res = train(_cfg(64, tiling=True, tile_scale=1.0, roi=(8, 8, 112, 112)), goods)
    scorer = Scorer(res.model, res.meta, device="cpu", backend="auto")
    good = scorer.score([make_part(rng, size=128)[0] for _ in range(3)])
    bad = scorer.score([make_part(rng, defect=True, size=128)[0] for _ in range(3)])
    assert good.maps[0].shape == (128, 128)
    assert bad.scores.min() > good.scores.max()


def test_too_few_images_and_a_bank_beyond_memory_are_one_sentence(monkeypatch):
    rng = np.random.default_rng(2)
    with pytest.raises(InspectError, match="at least 5 good images"):
        train(_cfg(), [make_part(rng)[0] for _ in range(3)])
    monkeypatch.setattr(quick, "_available_bytes", lambda: 1 << 16)
    with pytest.raises(InspectError, match="more than this computer can spare"):
        train(_cfg(), [make_part(rng)[0] for _ in range(8)])


def test_a_backbone_file_that_does_not_fit_is_one_sentence(tmp_path):
    bad = tmp_path / "lite0.pth"
    torch.save({"conv.weight": torch.zeros(3, 3)}, bad)
    with pytest.raises(InspectError, match="does not fit EfficientNet-Lite0"):
        quick.make_backbone(bad)
