from collections import OrderedDict

import pytest
import torch
from torch import nn

from engine.errors import InspectError
from engine.model import (CHECKPOINT_VERSION, EfficientAD, ModelConfig, load_checkpoint,
                          load_teacher_state, map_to_image, pdn, pdn_output_size, save_checkpoint)


@pytest.mark.parametrize("size", ["small", "medium"])
def test_shapes(size):
    m = EfficientAD(ModelConfig(size=size, image_size=128))
    x = torch.randn(2, 3, 128, 128)
    s = pdn_output_size(128)
    assert m.teacher(x).shape == (2, 384, s, s)
    assert m.student(x).shape == (2, 768, s, s)
    assert m.autoencoder(x).shape == (2, 384, s, s)
    assert m(x).shape == (2, 1, s, s)
    assert pdn_output_size(256) == 56
    assert pdn(size, 384, padding=True)(torch.randn(1, 3, 256, 256)).shape[-1] == 64


def _authors_teacher(size):
    """A state_dict in the authors' layout: the nn.Sequential's own keys ("0.weight", ...)."""
    torch.manual_seed(1)
    return pdn(size, 384).state_dict()


def _anomalib_teacher(size):
    """anomalib renames the convolutions conv1..convN inside a `teacher` submodule."""
    seq = _authors_teacher(size)
    convs = sorted({k.split(".")[0] for k in seq}, key=int)
    out = OrderedDict()
    for i, idx in enumerate(convs, start=1):
        out[f"model.teacher.conv{i}.weight"] = seq[f"{idx}.weight"]
        out[f"model.teacher.conv{i}.bias"] = seq[f"{idx}.bias"]
    return out


@pytest.mark.parametrize("size", ["small", "medium"])
@pytest.mark.parametrize("layout", [_authors_teacher, _anomalib_teacher])
def test_teacher_layouts_load(size, layout, tmp_path):
    sd = layout(size)
    path = tmp_path / "teacher.pth"
    torch.save(sd, path)
    m = EfficientAD(ModelConfig(size=size, image_size=64))
    load_teacher_state(m.teacher, path)
    ref = pdn(size, 384)
    ref.load_state_dict(_authors_teacher(size))
    x = torch.randn(1, 3, 64, 64)
    assert torch.equal(m.teacher(x), ref(x))


def test_teacher_wrong_size_is_explained(tmp_path):
    path = tmp_path / "medium.pth"
    torch.save(_authors_teacher("medium"), path)
    m = EfficientAD(ModelConfig(size="small", image_size=64))
    with pytest.raises(InspectError, match="convolution layers"):
        load_teacher_state(m.teacher, path)
    bad = _authors_teacher("small")
    bad["8.weight"] = torch.zeros(100, 256, 4, 4)
    bad["8.bias"] = torch.zeros(100)
    torch.save(bad, path)
    with pytest.raises(InspectError, match="shape"):
        load_teacher_state(m.teacher, path)


def test_checkpoint_roundtrip(tmp_path):
    torch.manual_seed(0)
    m = EfficientAD(ModelConfig(size="small", image_size=64)).eval()
    with torch.no_grad():
        m.teacher_mean.normal_()
        m.q_st_b.fill_(3.0)
    path = tmp_path / "m.pt"
    save_checkpoint(m, path, {"threshold": 0.3})
    raw = torch.load(path, weights_only=True)
    assert isinstance(raw, dict) and raw["version"] == CHECKPOINT_VERSION
    assert set(raw) == {"format", "version", "config", "state_dict", "meta"}
    m2, meta = load_checkpoint(path)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(m(x), m2(x))
    assert meta["threshold"] == 0.3 and m2.config == m.config


def test_bad_model_files(tmp_path):
    with pytest.raises(InspectError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x00garbage")
    with pytest.raises(InspectError, match="not a model file"):
        load_checkpoint(junk)
    pickled = tmp_path / "module.pt"
    torch.save(nn.Linear(2, 2), pickled)           # a pickled module, not a plain dict
    with pytest.raises(InspectError, match="not a model file"):
        load_checkpoint(pickled)
    teacher = tmp_path / "teacher.pth"
    torch.save(_authors_teacher("small"), teacher)
    with pytest.raises(InspectError, match="teacher file"):
        load_checkpoint(teacher)
    m = EfficientAD(ModelConfig(image_size=64))
    newer = tmp_path / "newer.pt"
    save_checkpoint(m, newer)
    ck = torch.load(newer, weights_only=True)
    ck["version"] = CHECKPOINT_VERSION + 1
    torch.save(ck, newer)
    with pytest.raises(InspectError, match="newer version"):
        load_checkpoint(newer)


def test_map_to_image_size_and_borders():
    small = torch.rand(1, 1, 56, 56)
    full = map_to_image(small, 256, (300, 410))
    assert full.shape == (1, 1, 300, 410)
    assert full.max() <= small.max() + 1e-6        # bilinear never invents a higher value
    # A hot cell in the grid's corner reaches the image's corner (edge replicated, not zeros).
    corner = torch.zeros(1, 1, 56, 56)
    corner[..., 0, 0] = 1.0
    assert map_to_image(corner, 256, (256, 256))[0, 0, 0, 0] > 0.99


def test_config_validation():
    with pytest.raises(InspectError):
        ModelConfig(size="large")
    with pytest.raises(InspectError):
        ModelConfig(image_size=100)
