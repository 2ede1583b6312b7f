"""History screen on a filled log: keyset paging forwards and back, score sorting, verdict
filter; Learn's folder import. No training needed."""
import time

import cv2
import numpy as np

from app_fixtures import data_dir, make_window, wait_until  # noqa: F401
from engine.types import Decision, Frame, Verdict


def _fill_log(folder, n: int) -> None:
    from engine.log import InspectionLog, InspectionRecord
    lg = InspectionLog.open(folder)
    w = lg.start_writer()
    rng = np.random.default_rng(0)
    now = time.time()
    for i in range(n):
        rgb = np.full((48, 64, 3), 80, np.uint8)
        score = float(rng.uniform(0, 1))
        decision = Decision.FAIL if i % 3 else Decision.PASS
        f = Frame(i, 0.0, now - n + i, "sim:test", rgb)
        v = Verdict(i, score, decision, 0.5, model_id="m")
        w.submit(InspectionRecord.from_frame(f, v, station="line1", product="demo part",
                                             overlay=rgb if decision != Decision.PASS else None))
    assert w.flush(30)
    lg.close()


def test_paging_sorting_and_filters(qtbot, data_dir):
    _fill_log(data_dir / "log", 150)                 # 100 FAIL, 50 PASS
    w = make_window(qtbot, data_dir, autostart=False)
    try:
        wait_until(qtbot, lambda: w.services.log is not None, 30, "the log")
        h = w.history
        w.tabs.setCurrentWidget(h)
        wait_until(qtbot, lambda: h.model.rowCount() == 50, 20, "the first page")
        assert h.count_label.text() == "1–50 of 100"
        assert all(r.verdict == Decision.FAIL for r in h.model.rows)
        times = [r.t_us for r in h.model.rows]
        assert times == sorted(times, reverse=True)
        first_ids = [r.id for r in h.model.rows]
        h.next_page()
        wait_until(qtbot, lambda: h.count_label.text() == "51–100 of 100", 20, "page 2")
        assert not h.next_button.isEnabled() and h.prev_button.isEnabled()
        assert not set(first_ids) & {r.id for r in h.model.rows}
        h.previous_page()
        wait_until(qtbot, lambda: [r.id for r in h.model.rows] == first_ids, 20, "page 1 again")
        h.sort_box.setCurrentIndex(2)                # highest score first
        h.verdict_box.setCurrentIndex(4)             # all verdicts
        h.refresh()
        wait_until(qtbot, lambda: h.count_label.text() == "1–50 of 150", 20, "all verdicts")
        scores = [r.score for r in h.model.rows]
        assert scores == sorted(scores, reverse=True)
        assert len(h.model.thumbs) >= 30             # FAIL rows have thumbnails
    finally:
        w.close()


def test_learn_imports_a_folder(qtbot, data_dir, tmp_path):
    folder = tmp_path / "good"
    folder.mkdir()
    for i in range(6):
        cv2.imwrite(str(folder / f"{i}.png"), np.full((40, 50, 3), 30 * i, np.uint8))
    (folder / "broken.png").write_bytes(b"not a png")
    w = make_window(qtbot, data_dir, autostart=False)
    try:
        w.learn.load_folder(folder)
        wait_until(qtbot, lambda: w.learn.thumbs.count() == 6, 20, "the thumbnails")
        assert len(w.learn.chosen_images()) == 6 and w.learn.train_button.isEnabled()
        w.learn.thumbs.item(0).setCheckState(w.learn.thumbs.item(0).checkState().__class__(0))
        assert len(w.learn.chosen_images()) == 5
    finally:
        w.close()


def test_learn_shows_and_uses_the_layout(qtbot, data_dir, tmp_path):
    """Size, tiling and ROI on the Learn screen: drawn on the first picture, explained in
    words, refused in words when they cannot fit, and what Learn trains with."""
    folder = tmp_path / "good"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        cv2.imwrite(str(folder / f"{i}.png"), rng.integers(0, 255, (120, 200, 3), np.uint8))
    w = make_window(qtbot, data_dir, autostart=False)
    try:
        learn = w.learn
        learn.load_folder(folder)
        wait_until(qtbot, lambda: learn.thumbs.count() == 6, 20, "the thumbnails")
        learn.image_size.setValue(64)
        learn.tiling.setChecked(True)
        learn.tile_scale.setValue(1.0)
        learn.roi.setText("10, 10, 180, 100")
        assert "tiles of 64 px" in learn.layout_text.text()
        assert "region 180×100 of the 200×120 frame" in learn.layout_text.text()
        assert learn.layout_preview.canvas.image is not None and not learn.layout_preview.canvas.image.isNull()
        learn.roi.setText("150, 10, 180, 100")                  # runs off the frame
        assert "does not fit inside" in learn.layout_text.text()
        learn.roi.setText("10, 10, 180")
        assert "four whole numbers" in learn.layout_text.text()
        learn.roi.setText("10, 10, 180, 100")
        learn.polygon.setText("10,10; 190,10; 100,109")
        cfg = learn.model_config()
        assert cfg.tiling and cfg.roi == (10, 10, 180, 100) and len(cfg.roi_polygon) == 3
        learn.tiling.setChecked(False)
        assert "squeezed to 64×64" in learn.layout_text.text()
        learn.tiling.setChecked(True)
        learn.train()                                          # saves the layout, then trains
        s = w.services.settings
        assert s.layout.tiling and s.layout.roi == (10, 10, 180, 100) and s.image_size == 64
        wait_until(qtbot, lambda: learn.result is not None, 120, "training with tiles and ROI")
        from engine.model import load_checkpoint
        model, _ = load_checkpoint(learn.result.path)
        assert model.config.tiling and model.config.roi == (10, 10, 180, 100)
        assert model.config.frame_size == (120, 200)
    finally:
        w.close()


def test_learn_aims_the_threshold_and_shows_the_synthetic_check(qtbot, data_dir, tmp_path):
    """The Learn screen's false-reject aim goes into training and into the product; the
    result says the expected rate, how sure it is and what the synthetic defects say;
    skipped files are named on screen."""
    folder = tmp_path / "good"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for i in range(8):
        cv2.imwrite(str(folder / f"{i}.png"), rng.integers(90, 110, (80, 80, 3), np.uint8))
    cv2.imwrite(str(folder / "7_mask.png"), np.zeros((80, 80), np.uint8))
    (folder / "broken.png").write_bytes(b"not a png")
    w = make_window(qtbot, data_dir, autostart=False)
    try:
        learn = w.learn
        learn.load_folder(folder)
        wait_until(qtbot, lambda: learn.thumbs.count() == 8, 20, "the thumbnails")
        text = learn.progress_text.text()
        assert "broken.png" in text and "mask file" in text
        assert learn.target_frr.value() == 1.0                  # the product's default aim
        learn.target_frr.setValue(5.0)
        learn.train()
        wait_until(qtbot, lambda: learn.result is not None, 120, "training")
        result = learn.result_text.text()
        assert "Expected false rejects: 5.0% of good parts" in result
        assert "learn from more good parts" in result              # 2 held-out parts
        assert "Synthetic defects: the threshold misses" in result
        assert learn.synthetic_bars.isVisible()
        learn.product_name.setCurrentText("cap")
        learn.save()
        wait_until(qtbot, lambda: w.services.settings.current_product == "cap", 30, "the save")
        assert w.services.settings.product.target_false_reject == 0.05
    finally:
        w.close()
