"""Staged Learn on the Learn screen: the quick model judges the line within the first stage,
EfficientAD trains behind it, and the better one (or the pinned one) ends up live."""
from __future__ import annotations

import pytest

from app_fixtures import make_window, tiny_settings, wait_until
from engine.settings import save_settings


@pytest.fixture
def staged_window(qtbot, tmp_path):
    d = tmp_path / "data"
    save_settings(tiny_settings(learn_plan="staged"), d / "settings.json")
    w = make_window(qtbot, d)
    wait_until(qtbot, lambda: w.services.log is not None, 30, "the inspection log to open")
    yield w
    w.close()


def _live_kind(w) -> str | None:
    info = w.services.model_info
    return info.meta.kind if info is not None and info.meta is not None else None


def test_quick_model_is_live_first_then_the_better_one_and_pins_switch(staged_window, qtbot):
    w, learn = staged_window, staged_window.learn
    w.tabs.setCurrentWidget(learn)
    assert learn.plan_choice.currentData() == "staged"
    learn.capture()
    wait_until(qtbot, lambda: learn.thumbs.count() >= learn.count.value(), 30, "the capture")
    learn.product_name.setCurrentText("bracket")
    learn.train()
    # stage 1: the quick model is saved and judges the line while EfficientAD learns
    try:
        wait_until(qtbot, lambda: _live_kind(w) == "quick", 300, "the quick model to go live")
    except Exception:
        raise AssertionError(f"{learn.progress_text.text()} | {w.services.model_info} | "
                             f"{learn.result_text.text()[:300]}") from None
    assert w.services.settings.current_product == "bracket"
    wait_until(qtbot, lambda: learn.job is not None and learn.job.running, 30, "stage 2 to start")
    # stage 2 done: the comparison is shown and the chosen kind is live
    wait_until(qtbot, lambda: "Staged Learn" in learn.result_text.text(), 300, "EfficientAD")
    text = learn.result_text.text()
    assert "quick model: threshold" in text and "EfficientAD: threshold" in text
    wait_until(qtbot, lambda: _live_kind(w) in ("quick", "efficientad"), 30, "the chosen model")
    # pin the other kind: it becomes live; pin back: the first one returns
    first = _live_kind(w)
    other = "efficientad" if first == "quick" else "quick"
    learn.pin.setCurrentIndex(learn.pin.findData(other))
    wait_until(qtbot, lambda: _live_kind(w) == other, 30, f"the pinned {other} model")
    assert "pinned by the engineer" in learn.result_text.text()
    learn.pin.setCurrentIndex(learn.pin.findData(first))
    wait_until(qtbot, lambda: _live_kind(w) == first, 30, f"the {first} model again")
