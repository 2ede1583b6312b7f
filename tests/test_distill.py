"""Teacher distillation: crop/padded-map alignment, backbone target shapes, a tiny run + resume."""
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from engine.backbones import EfficientNetLite, PatchTarget, patch_target_reference
from engine.distill import (BORDER, DistillConfig, crop_pair, distill, export_teacher,
                            max_offset, split_images)
from engine.errors import InspectError
from engine.model import load_teacher_state, pdn


def test_unpadded_crop_matches_padded_map():
    """Unpadded PDN on a crop at (4·r0, 4·c0) == padded 64×64 map at (i+4+r0, j+4+c0)."""
    torch.manual_seed(0)
    padded = pdn("small", 384, padding=True).eval()
    unpadded = pdn("small", 384, padding=False).eval()
    unpadded.load_state_dict(padded.state_dict())       # same weights, same key layout
    image = torch.randn(3, 256, 256)
    with torch.no_grad():
        full = padded(image[None])[0]                    # (384,64,64)
        assert full.shape == (384, 64, 64)
        for n, r0, c0 in [(8, 0, 0), (8, max_offset(8), 3), (16, 11, 27)]:
            x, y = crop_pair(image, full, r0, c0, n)
            assert x.shape == (3, 4 * n + 29, 4 * n + 29) and y.shape == (384, n, n)
            out = unpadded(x[None])[0]
            torch.testing.assert_close(out, y, atol=1e-4, rtol=1e-4)
        whole = unpadded(image[None])[0]                 # (384,56,56) == padded interior
        torch.testing.assert_close(whole, full[:, BORDER:-BORDER, BORDER:-BORDER], atol=1e-4, rtol=1e-4)


def test_backbone_target_shape_and_fast_aggregation():
    bb = EfficientNetLite()
    with torch.no_grad():
        maps = bb(torch.rand(1, 3, 128, 128))
        assert [m.shape[-1] for m in maps] == [16, 8]            # strides 8 and 16
        agg = PatchTarget(tuple(m.shape[1] for m in maps))
        t = agg(maps)
        assert t.shape == (1, 384, 16, 16)
        torch.testing.assert_close(t, patch_target_reference(maps), atol=1e-4, rtol=1e-4)


def test_lite2_gives_the_same_strides_from_its_own_wheel():
    from engine.backbones import make_backbone
    bb = make_backbone("efficientnet-lite2")
    with torch.no_grad():
        maps = bb(torch.rand(1, 3, 128, 128))
    assert [tuple(m.shape[1:]) for m in maps] == [(288, 16, 16), (720, 8, 8)]


def test_an_unknown_backbone_is_one_sentence():
    from engine.backbones import make_backbone
    with pytest.raises(InspectError, match="efficientnet-lite0, efficientnet-lite2 or wide_resnet101_2"):
        make_backbone("efficientnet-lite9")


def _images(folder: Path, k: int) -> Path:
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(k):
        Image.fromarray(rng.integers(0, 256, (80 + 8 * i, 96, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return folder


def test_tiny_distillation_resumes_and_exports(tmp_path):
    torch.set_num_threads(1)
    imgs = _images(tmp_path / "imgs", 5)
    cfg = DistillConfig(images=str(imgs), work_dir=str(tmp_path / "w"), steps=2, crop_out=4,
                        batch=2, pool_views=2, stat_views=2, holdout_every=5)
    path = distill(cfg)
    ck = torch.load(tmp_path / "w" / "checkpoint.pt", weights_only=False)
    assert ck["state"]["step"] == 2 and ck["mean"].shape == (384,)
    # resume: the same work dir continues from step 2
    distill(DistillConfig(**{**cfg.__dict__, "steps": 3}))
    ck2 = torch.load(tmp_path / "w" / "checkpoint.pt", weights_only=False)
    assert ck2["state"]["step"] == 3 and torch.equal(ck2["mean"], ck["mean"])
    out = export_teacher(tmp_path / "w" / "checkpoint.pt", tmp_path / "t.pth")
    sd = torch.load(out, weights_only=True)
    assert "0.weight" in sd and sd["0.weight"].dtype == torch.float16
    teacher = pdn("small", 384)
    load_teacher_state(teacher, path)
    torch.testing.assert_close(teacher[0].weight, ck2["pdn"]["0.weight"].half().float())


def test_empty_folder_and_bad_weights_are_one_sentence(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InspectError, match="has no images"):
        split_images(tmp_path / "empty", 20)
    bad = tmp_path / "bad.pth"
    torch.save({"x": torch.zeros(1)}, bad)
    with pytest.raises(InspectError, match="does not fit EfficientNet-Lite0"):
        EfficientNetLite(weights=bad)


def test_a_run_can_start_from_a_teacher_file_and_a_bad_checkpoint_is_one_sentence(tmp_path):
    """--init: a new distillation starts from a teacher's weights (the shipped one, to go on
    distilling it); a damaged checkpoint is refused in words, never unpickled blindly."""
    torch.set_num_threads(1)
    imgs = _images(tmp_path / "imgs", 5)
    start = pdn("small", 384)
    torch.nn.init.constant_(start[0].weight, 0.01)
    init = tmp_path / "start.pth"
    torch.save({k: v.half() for k, v in start.state_dict().items()}, init)
    cfg = DistillConfig(images=str(imgs), work_dir=str(tmp_path / "w"), steps=1, crop_out=4,
                        batch=2, pool_views=2, stat_views=2, holdout_every=5, init=str(init),
                        lr=1e-9)
    distill(cfg)
    ck = torch.load(tmp_path / "w" / "checkpoint.pt", weights_only=True)
    torch.testing.assert_close(ck["pdn"]["0.weight"], torch.full_like(ck["pdn"]["0.weight"], 0.01),
                               atol=1e-4, rtol=0)
    (tmp_path / "w" / "checkpoint.pt").write_bytes(b"garbage")
    with pytest.raises(InspectError, match="not a distillation checkpoint"):
        distill(DistillConfig(**{**cfg.__dict__, "steps": 2}))
    with pytest.raises(InspectError, match="not a distillation checkpoint"):
        export_teacher(tmp_path / "w" / "checkpoint.pt", tmp_path / "t.pth")


def test_the_cosine_schedule_warms_up_decays_to_its_floor_and_drives_the_optimiser(tmp_path):
    """--schedule cosine: linear warm-up, then from the peak down to lr·lr_floor at the end of
    the budget; "constant" stays at lr after its warm-up. A run's optimiser uses the rate the
    schedule gives for its last step (kept in the checkpoint, so a resume carries on)."""
    from engine.distill import learning_rate
    cos = DistillConfig(images="x", lr=1e-3, schedule="cosine", warmup=10, lr_floor=0.01)
    assert learning_rate(cos, 0, 0.0) == pytest.approx(1e-4)          # 1/10 of the way up
    assert learning_rate(cos, 9, 0.01) == pytest.approx(1e-3)
    rates = [learning_rate(cos, s, s / 100) for s in range(10, 101)]
    assert all(a >= b for a, b in zip(rates, rates[1:]))              # never rises after warm-up
    assert rates[-1] == pytest.approx(1e-5)                            # the floor at the end
    assert learning_rate(cos, 55, 0.5) == pytest.approx(1e-5 + (1e-3 - 1e-5) / 2)
    const = DistillConfig(images="x", lr=1e-3)
    assert learning_rate(const, 0, 0.0) == learning_rate(const, 99, 0.99) == 1e-3

    torch.set_num_threads(1)
    imgs = _images(tmp_path / "imgs", 5)
    cfg = DistillConfig(images=str(imgs), work_dir=str(tmp_path / "w"), steps=4, crop_out=4,
                        batch=2, pool_views=2, stat_views=2, holdout_every=5, lr=1e-3,
                        schedule="cosine")
    distill(cfg)
    ck = torch.load(tmp_path / "w" / "checkpoint.pt", weights_only=True)
    expected = learning_rate(cfg, 3, 3 / 4)
    assert ck["state"]["lr"] == pytest.approx(expected) and expected < 1e-3
    assert ck["opt"]["param_groups"][0]["lr"] == pytest.approx(expected)
    with pytest.raises(InspectError, match="schedule must be"):
        distill(DistillConfig(**{**cfg.__dict__, "schedule": "step"}))


def test_a_cuda_run_without_a_gpu_is_one_sentence(tmp_path):
    """--device cuda on a machine without one is refused in words before any work."""
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    imgs = _images(tmp_path / "imgs", 5)
    cfg = DistillConfig(images=str(imgs), work_dir=str(tmp_path / "w"), steps=1, crop_out=4,
                        batch=2, pool_views=2, stat_views=2, holdout_every=5, device="cuda")
    with pytest.raises(InspectError, match="no CUDA GPU is available"):
        distill(cfg)
    assert not (tmp_path / "w").exists()


def test_photos_kept_in_memory_train_the_same_weights(tmp_path):
    """The GPU's photo cache changes where a photo comes from, not the random stream: two
    steps with and without it give the same weights. A bad --refresh is one sentence."""
    torch.set_num_threads(1)
    imgs = _images(tmp_path / "imgs", 5)
    base = dict(images=str(imgs), steps=2, crop_out=4, batch=2, pool_views=3, refresh=2,
                stat_views=2, holdout_every=5)
    weights = []
    for cache in (False, True):
        distill(DistillConfig(**base, work_dir=str(tmp_path / f"w{cache}"), cache_images=cache))
        weights.append(torch.load(tmp_path / f"w{cache}" / "checkpoint.pt", weights_only=True)["pdn"])
    for k in weights[0]:
        assert torch.equal(weights[0][k], weights[1][k]), k
    with pytest.raises(InspectError, match="--refresh must be between 1 and --pool-views"):
        distill(DistillConfig(**{**base, "refresh": 4}, work_dir=str(tmp_path / "bad")))
