"""Input size, tiling and region of interest (engine/layout.py)."""
from dataclasses import replace

import numpy as np
import pytest
import torch

import main
from engine.errors import InspectError
from engine.layout import Layout, _starts, stitch
from engine.model import EfficientAD, ModelConfig
from engine.scoring import Scorer
from engine.train import TrainConfig, train


def frame(rng, defect=None, h=200, w=300):
    im = np.full((h, w, 3), 180, np.int16)
    im[40:160, 50:250] = (70, 100, 150)
    im += rng.integers(-6, 7, im.shape, dtype=np.int16)
    if defect is not None:
        y, x = defect
        im[y:y + 6, x:x + 6] = (255, 255, 0)
    return np.clip(im, 0, 255).astype(np.uint8)


def cfg(**model_kw):
    return TrainConfig(model=ModelConfig(image_size=64, **model_kw), steps=25, teacher="random",
                       penalty="none", device="cpu")


def test_tile_starts_cover_with_overlap():
    for length in (64, 68, 100, 256, 1000):
        starts = _starts(length, 64, 0.25)
        assert starts[0] == 0 and starts[-1] + 64 == length
        assert all(b - a <= 48 for a, b in zip(starts, starts[1:]))          # ≥ 25% overlap
        assert all(s % 4 == 0 for s in starts)


def test_stitched_map_has_no_tile_seams():
    """A defect-free textured frame. The PDN is fully convolutional and tiles start on its
    4-px grid, so a seamless stitch must equal the student-teacher map computed on the whole
    frame at once, cell for cell. Blended stitching does; naive pasting (each tile over the
    last, padding included) does not — so the test can fail."""
    torch.manual_seed(0)
    model = EfficientAD(ModelConfig(image_size=128, tiling=True)).eval()
    rng = np.random.default_rng(0)
    img = (rng.random((1, 3, 40, 80)) * 255).astype(np.float32)
    img = torch.nn.functional.interpolate(torch.from_numpy(img), size=(256, 512), mode="bicubic")
    frame01 = (img[0] / 255).clamp(0, 1)
    layout = Layout.of(model.config, (256, 512))
    assert len(layout.tile_starts()[1]) > 3
    with torch.no_grad():
        scaled = model.normalize_image(layout.scaled(layout.crop(frame01))[None])
        whole = model.st_map(scaled)[0, 0]                         # (h', w') one pass
        st = model.st_map(model.normalize_image(layout.tiles(layout.scaled(layout.crop(frame01)))))
        h, w = whole.shape
        blended = stitch(st, layout, blend=True)[0, 0, 4:4 + h, 4:4 + w]
        pasted = stitch(st, layout, blend=False)[0, 0, 4:4 + h, 4:4 + w]
    scale = float(whole.abs().max())
    assert float((blended - whole).abs().max()) < 1e-4 * scale
    assert float((pasted - whole).abs().max()) > 1e-2 * scale


def test_tiling_finds_a_small_defect_and_keeps_frame_resolution():
    rng = np.random.default_rng(1)
    good = [frame(rng) for _ in range(10)]
    result = train(replace(cfg(tiling=True), steps=60), good)
    sc = Scorer(result.model, result.meta, "cpu")
    out = sc.score([frame(rng), frame(rng, defect=(100, 150))])
    assert [m.shape for m in out.maps] == [(200, 300), (200, 300)]
    assert out.scores[1] > out.scores[0]
    peak = np.unravel_index(np.argmax(out.maps[1]), out.maps[1].shape)
    assert abs(peak[0] - 103) < 30 and abs(peak[1] - 153) < 30     # the map points at it
    # tiling alone adapts to another frame size (more tiles), no resize of the tiles
    assert sc.score([frame(rng, h=260, w=280)]).maps[0].shape == (260, 280)
    # the fast CPU path for tiles (NNPACK convolutions) gives the eager maps
    fast = Scorer(result.model, result.meta, "cpu", backend="auto")
    eager = Scorer(result.model, result.meta, "cpu", backend="eager")
    frames = [frame(rng), frame(rng, defect=(60, 200))]
    a, b = fast.score(frames), eager.score(frames)
    assert np.allclose(a.scores, b.scores, rtol=1e-4)
    assert all(np.abs(x - y).max() <= 1e-4 * b.scores.max() for x, y in zip(a.maps, b.maps))


def test_roi_outside_never_raises_and_sizes_are_checked():
    rng = np.random.default_rng(2)
    good = [frame(rng) for _ in range(8)]
    roi = (40, 30, 220, 140)
    result = train(cfg(roi=roi), good)
    assert result.model.config.frame_size == (200, 300)
    sc = Scorer(result.model, result.meta, "cpu")
    clean = frame(rng)
    dirty = clean.copy()
    dirty[0:25, 0:35] = (255, 0, 255)                               # outside the ROI
    a, b = sc.score([clean, dirty]).scores
    assert b == pytest.approx(a, rel=1e-5)
    with pytest.raises(InspectError, match="region of interest was drawn on 300×200"):
        sc.score([frame(rng, h=220, w=300)])


def test_polygon_masks_scoring():
    rng = np.random.default_rng(3)
    good = [frame(rng) for _ in range(8)]
    poly = ((40, 30), (260, 30), (260, 170))                        # upper-right triangle
    result = train(cfg(roi=(40, 30, 220, 140), roi_polygon=poly), good)
    sc = Scorer(result.model, result.meta, "cpu")
    clean = frame(rng)
    dirty = clean.copy()
    dirty[140:165, 45:70] = (255, 0, 255)                           # inside ROI, outside triangle
    a, b = sc.score([clean, dirty]).scores
    assert b == pytest.approx(a, rel=1e-5)


@pytest.mark.parametrize("model_kw,match", [
    (dict(tiling=True, tile_scale=0.1), "do not fit"),
    (dict(roi=(250, 10, 100, 100)), "does not fit inside"),
    (dict(roi=(10, 10, 100, 100), roi_polygon=((10, 10), (500, 10), (10, 90))), "outside the region"),
])
def test_bad_layouts_are_explained(model_kw, match):
    rng = np.random.default_rng(4)
    with pytest.raises(InspectError, match=match):
        train(cfg(**model_kw), [frame(rng) for _ in range(6)])


def test_layout_is_described_and_drawn_for_people():
    from engine.layout import describe, draw_layout
    squeezed = Layout.of(ModelConfig(image_size=256), (460, 1130))
    assert "squeezed to 256×256" in describe(squeezed) and "too small" in describe(squeezed)
    tiled = Layout.of(ModelConfig(image_size=256, tiling=True, roi=(10, 10, 1000, 440),
                                  roi_polygon=((20, 20), (900, 30), (500, 400))), (460, 1130))
    text = describe(tiled)
    ys, xs = tiled.tile_starts()
    assert f"{len(ys) * len(xs)} tiles of 256 px" in text and "20-px defect becomes 20 px" in text
    rgb = np.full((460, 1130, 3), 200, np.uint8)
    out = draw_layout(rgb, tiled)
    assert out.shape == rgb.shape and out.dtype == np.uint8 and out.flags["C_CONTIGUOUS"]
    assert (out[2, 2] < 100).all()                     # outside the ROI: dimmed
    assert (out[440, 30] < 100).all()                  # inside the ROI, outside the polygon
    assert tuple(out[10, 500]) == (40, 200, 60)        # ROI outline in green
    assert (rgb == 200).all()                          # the frame itself is untouched


def test_cli_exposes_tiling_and_roi(tmp_path, capsys):
    import cv2
    rng = np.random.default_rng(5)
    d = tmp_path / "good"
    d.mkdir()
    for i in range(6):
        cv2.imwrite(str(d / f"{i}.png"), frame(rng)[:, :, ::-1])
    model = tmp_path / "m.pt"
    args = ["train", "--good", str(d), "--out", str(model), "--steps", "5", "--image-size", "64",
            "--teacher", "random", "--penalty", "none", "--device", "cpu"]
    assert main.main(args + ["--tiling", "--tile-scale", "0.5", "--roi", "0,0,300,200"]) == 0
    assert main.main(args + ["--roi", "1,2,3"]) == 2
    assert "four numbers" in capsys.readouterr().err
