import numpy as np
import pytest
import torch

from engine.errors import InspectError
from engine.model import EfficientAD, ModelConfig
from engine.scoring import Scorer, overlay
from engine.types import Decision


def scorer():
    torch.manual_seed(0)
    return Scorer(EfficientAD(ModelConfig(image_size=64)), {"threshold": 0.2}, device="cpu")


def test_any_size_batch_maps_at_input_resolution():
    sc = scorer()
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (h, w, 3), dtype=np.uint8) for h, w in [(64, 64), (120, 77), (33, 300)]]
    r = sc.score(frames)
    assert r.scores.shape == (3,)
    for f, m, s in zip(frames, r.maps, r.scores):
        assert m.shape == f.shape[:2] and m.dtype == np.float32
        assert s == pytest.approx(float(m.max()), rel=1e-5, abs=1e-6)
    # batch result equals one-by-one
    one = [sc.score([f]).scores[0] for f in frames]
    assert np.allclose(one, r.scores, rtol=1e-4, atol=1e-5)
    assert sc.score(np.stack([frames[0]] * 2), with_maps=False).maps is None


def test_device_choice_and_errors():
    sc = scorer()
    assert sc.device.type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(InspectError, match="CUDA"):
            Scorer(EfficientAD(ModelConfig(image_size=64)), device="cuda")
    with pytest.raises(InspectError, match="uint8"):
        sc.score([np.zeros((10, 10, 3), np.float32)])


def test_decide_and_overlay():
    sc = scorer()
    assert sc.decide(0.3) is Decision.FAIL and sc.decide(0.1) is Decision.PASS
    assert sc.decide(0.15, review_below=0.1) is Decision.REVIEW
    rgb = np.full((20, 30, 3), 128, np.uint8)
    amap = np.zeros((20, 30), np.float32)
    amap[5:10, 5:10] = 1.0
    ov = overlay(rgb, amap, threshold=0.2)
    assert ov.shape == rgb.shape and ov.dtype == np.uint8
    assert (ov[0, 0] == rgb[0, 0]).all()            # no tint where the map is zero
    assert not (ov[7, 7] == rgb[7, 7]).all()
