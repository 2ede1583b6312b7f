"""What operators asked of the screens (issue 18, part 6): the region of interest dragged on
the Learn picture in sync with its number boxes, Live's near-miss cue, a new FAIL in
History without Refresh, one name per label action, export buttons that are never cut
off at 1280×800, and the held-out statement that says when it rests on too few parts."""
from __future__ import annotations

import time

import cv2
import numpy as np
import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtWidgets import QAbstractButton

from app_fixtures import data_dir, make_window, wait_until  # noqa: F401 (fixture)
from engine.types import Decision, Frame, Verdict


@pytest.fixture
def win(qtbot, data_dir):
    w = make_window(qtbot, data_dir, autostart=False)
    w.resize(1280, 800)
    wait_until(qtbot, lambda: w.services.log is not None, 30, "the inspection log to open")
    yield w
    w.close()


def _result(score: float, threshold: float, decision: Decision, logged=True, frame_id=1):
    from engine.line import LiveResult
    rgb = np.zeros((48, 64, 3), np.uint8)
    f = Frame(frame_id, time.monotonic(), time.time(), "sim", rgb)
    return LiveResult(f, Verdict(frame_id, score, decision, threshold), rgb, "demo part",
                      10.0, 1, int(decision == Decision.FAIL), 0, logged)


def test_near_miss_cue_on_live(win, qtbot):
    from app.live import near_miss
    assert near_miss(0.095, 0.1, Decision.PASS) and not near_miss(0.089, 0.1, Decision.PASS)
    assert not near_miss(0.12, 0.1, Decision.FAIL) and not near_miss(float("nan"), 0.1, Decision.PASS)
    live = win.live
    win.tabs.setCurrentWidget(live)
    live._on_result(_result(0.095, 0.1, Decision.PASS))
    live._draw()
    assert "NEAR MISS" in live.near_miss_label.text() and "95%" in live.near_miss_label.text()
    assert "border" in live.verdict.styleSheet() and live.verdict.text() == "PASS"
    live._on_result(_result(0.05, 0.1, Decision.PASS))
    live._draw()
    assert live.near_miss_label.text() == "" and "border" not in live.verdict.styleSheet()
    # big enough to read from two metres: the score's digits are drawn at 46 px
    assert "46px" in live.score_label.text() and "0.050" in live.score_label.text()


def test_new_fail_appears_in_history_without_refresh(win, qtbot):
    from engine.log import InspectionRecord
    hist = win.history
    win.tabs.setCurrentWidget(hist)
    wait_until(qtbot, lambda: hist.count_label.text().startswith("0"), 10, "the empty first page")
    lg = win.services.log
    v = Verdict(5, 0.8, Decision.FAIL, 0.5, model_id="m")
    lg.submit(InspectionRecord(v, time.time(), "line1", "sim", "demo part",
                               image=np.zeros((32, 32, 3), np.uint8)), timeout=5)
    win.services.live_result.emit(_result(0.8, 0.5, Decision.FAIL, frame_id=5))
    wait_until(qtbot, lambda: hist.model.rowCount() == 1, 10, "the FAIL to appear by itself")
    # someone reading an older page is not moved
    hist.cursor_after = object()
    win.services.live_result.emit(_result(0.8, 0.5, Decision.FAIL))
    qtbot.wait(1500)
    assert hist._new_defect


def test_roi_and_polygon_dragged_in_sync_with_the_boxes(win, qtbot, tmp_path):
    folder = tmp_path / "good"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        cv2.imwrite(str(folder / f"{i}.png"), rng.integers(0, 255, (120, 200, 3), np.uint8))
    learn = win.learn
    win.tabs.setCurrentWidget(learn)
    learn.load_folder(folder)
    wait_until(qtbot, lambda: learn.thumbs.count() == 6, 20, "the thumbnails")
    ed = learn.layout_preview
    canvas = ed.canvas
    assert canvas.frame_hw == (120, 200)

    def at(x, y) -> QPoint:
        return canvas.to_widget(x, y).toPoint()

    qtbot.mousePress(canvas, Qt.LeftButton, pos=at(20, 10))
    qtbot.mouseMove(canvas, at(100, 60))
    qtbot.mouseMove(canvas, at(180, 110))
    qtbot.mouseRelease(canvas, Qt.LeftButton, pos=at(180, 110))
    x, y, w, h = learn.layout_settings().roi
    assert abs(x - 20) <= 2 and abs(y - 10) <= 2 and abs(w - 160) <= 3 and abs(h - 100) <= 3
    assert "region" in learn.layout_text.text()
    # a drag inside moves it; the box follows
    qtbot.mousePress(canvas, Qt.LeftButton, pos=at(60, 50))
    qtbot.mouseMove(canvas, at(50, 45))
    qtbot.mouseRelease(canvas, Qt.LeftButton, pos=at(50, 45))
    x2, y2, w2, h2 = learn.layout_settings().roi
    assert (w2, h2) == (w, h) and abs(x2 - (x - 10)) <= 2 and abs(y2 - (y - 5)) <= 2
    # typing in the box moves the drawn region
    learn.roi.setText("10, 10, 100, 80")
    assert canvas.roi == (10, 10, 100, 80)
    # polygon: three clicks, then drag a point
    ed.polygon_mode.setChecked(True)
    for px, py in ((12, 12), (105, 12), (60, 85)):
        qtbot.mouseClick(canvas, Qt.LeftButton, pos=at(px, py))
    pts = learn.layout_settings().roi_polygon
    assert len(pts) == 3 and all(abs(a - b) <= 2 for p, q in zip(pts, ((12, 12), (105, 12), (60, 85)))
                                 for a, b in zip(p, q))
    qtbot.mousePress(canvas, Qt.LeftButton, pos=at(60, 85))
    qtbot.mouseMove(canvas, at(60, 70))
    qtbot.mouseRelease(canvas, Qt.LeftButton, pos=at(60, 70))
    assert abs(learn.layout_settings().roi_polygon[2][1] - 70) <= 2
    qtbot.mouseClick(canvas, Qt.RightButton, pos=at(105, 12))
    assert "at least 3 points" in learn.layout_text.text()       # said, nothing lost
    ed.clear_shapes()
    assert learn.roi.text() == "" and learn.polygon.text() == ""


def test_one_name_per_label_action(win):
    texts = [a.text() for a in win.findChildren(type(win.start_action))] + \
        [b.text() for b in win.findChildren(QAbstractButton)]
    joined = " | ".join(texts).lower()
    assert "confirmed defect" in joined and "false reject" in joined
    for other in ("defect (ctrl", "mark confirmed", "mark false"):
        assert other not in joined.replace("confirmed defect (ctrl", ""), other


def test_export_buttons_fit_at_1280x800(win, qtbot):
    for screen, buttons in ((win.history, (win.history.export_csv_button,
                                           win.history.export_zip_button)),
                            (win.audit_screen, (win.audit_screen.export_button,))):
        win.tabs.setCurrentWidget(screen)
        qtbot.wait(50)
        for b in buttons:
            assert b.isVisible() and b.width() >= b.sizeHint().width(), b.text()
            right = b.mapTo(win, QPoint(b.width(), 0)).x()
            assert right <= win.width(), b.text()


def test_learn_sentences_beside_the_picture_and_few_parts_said(win):
    from app.learn import learn_result_text
    from engine.meta import ModelMeta
    assert "too few" in learn_result_text(ModelMeta(holdout_scores=(0.1, 0.2, 0.15)))
    assert "too few" not in learn_result_text(ModelMeta(holdout_scores=tuple([0.1] * 40)))
    assert "no held-out" in learn_result_text(ModelMeta())
    learn = win.learn
    win.tabs.setCurrentWidget(learn)
    learn.plan.setText("word " * 80)
    pic = learn.layout_preview
    for label in (learn.plan, learn.layout_text):
        right = label.mapTo(learn, QPoint(label.width(), 0)).x()
        assert right <= pic.mapTo(learn, QPoint(0, 0)).x(), "a sentence runs under the picture"


def test_every_screen_fits_1280x800(win):
    """A window lower than a page's minimum gets that page squeezed (Qt then draws widgets
    over each other, as the Learn sentences once ran under the picture): every page must
    fit the 1280×800 line PC's screen."""
    hint = win.minimumSizeHint()
    assert hint.width() <= 1280 and hint.height() <= 800, hint
