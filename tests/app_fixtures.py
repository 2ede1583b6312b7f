"""Fixtures for the app tests: a data folder with tiny-model settings, the main window on it,
and a simulated line the tests control (fast, with more defects than the default)."""
from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import pytest

from engine.settings import CameraSettings, Settings, save_settings

# A model trains in ~10-20 s on the loaded 2-core dev PC at this size (random teacher: the
# shipped one is tested elsewhere; here the app's flows are what is under test).
TINY = dict(image_size=64, training_steps=10, good_frames=20, teacher="random", penalty="none",
            device="cpu", learn_plan="efficientad")     # staged Learn: tests/test_app_staged.py


def tiny_settings(**changes) -> Settings:
    return replace(Settings(camera=CameraSettings(fps=25.0)), **{**TINY, **changes})


def fast_line(defect_rate: float = 0.3, fps: float = 25.0, kinds=("misplaced",)):
    """source_factory for CameraFeed: the simulated line with clear defects, quickly."""
    from engine.camera.simulated import SimulatedLineConfig, SimulatedLineSource

    def factory(cam):
        return SimulatedLineSource(SimulatedLineConfig(fps=fps, defect_rate=defect_rate,
                                                       defect_kinds=tuple(kinds)))
    return factory


def wait_until(qtbot, cond, timeout_s: float, what: str) -> None:
    """qtbot.waitUntil with a readable failure message."""
    try:
        qtbot.waitUntil(lambda: bool(cond()), timeout=int(timeout_s * 1000))
    except (AssertionError, TimeoutError, Exception) as e:   # pytest-qt's TimeoutError too
        if not type(e).__name__.endswith(("TimeoutError", "AssertionError")):
            raise
        raise AssertionError(f"timed out after {timeout_s} s waiting for {what}") from None


@pytest.fixture
def data_dir(tmp_path) -> Path:
    d = tmp_path / "data"
    save_settings(tiny_settings(), d / "settings.json")
    return d


def make_window(qtbot, data_dir: Path, line=None, autostart: bool = True):
    from app.main import setup_logging
    from app.main_window import MainWindow
    from app.services import Services
    from app.tasks import ErrorHandler
    setup_logging(data_dir)
    errors = ErrorHandler()
    services = Services(data_dir, errors, backend="eager")
    services.feed.source_factory = line or fast_line()
    window = MainWindow(services)
    qtbot.addWidget(window)
    window.show()
    window.start_up(autostart=autostart)
    return window


@pytest.fixture
def window(qtbot, data_dir):
    w = make_window(qtbot, data_dir)
    wait_until(qtbot, lambda: w.services.log is not None, 30, "the inspection log to open")
    yield w
    w.close()


def collect_results(services, qtbot, n: int, timeout_s: float = 30.0) -> list:
    got = []
    services.live_result.connect(got.append)
    try:
        wait_until(qtbot, lambda: len(got) >= n, timeout_s, f"{n} live results")
    finally:
        services.live_result.disconnect(got.append)
    return got


def train_product(window, qtbot, name: str = "bracket", timeout_s: float = 120.0) -> None:
    """Drive the Learn screen: capture, train, save under `name`; wait until it scores."""
    learn = window.learn
    window.tabs.setCurrentWidget(learn)
    learn.capture()
    wait_until(qtbot, lambda: learn.thumbs.count() >= learn.count.value(), 30, "the capture")
    assert learn.train_button.isEnabled()
    learn.train()
    wait_until(qtbot, lambda: learn.result is not None, timeout_s, "training to finish")
    learn.product_name.setCurrentText(name)
    learn.save()
    wait_until(qtbot, lambda: window.services.model_info is not None and
               window.services.model_info.model_id and
               window.services.settings.current_product == name, 30, "the new model to load")
    time.sleep(0.05)
