"""Screenshots of every screen from the running app, for the README:

    xvfb-run -s "-screen 0 1400x900x24" .venv/bin/python -m app.screenshots docs/screenshots

Drives the real window on a fresh data folder: live without a model, Learn good parts on
the simulated line (a small, quick model), live judging, the threshold screen, History with
a labelled defect, Settings. Each screen is grabbed with QWidget.grab()."""
from __future__ import annotations

import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path



def spin(ms: int) -> None:
    """Run the Qt event loop for ms milliseconds."""
    from PySide6.QtCore import QEventLoop, QTimer
    loop = QEventLoop()
    QTimer.singleShot(ms, loop.quit)
    loop.exec()


def wait(cond, timeout_s: float, what: str) -> None:
    """Spin until cond() holds; a timeout ends the script with what it waited for."""
    end = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > end:
            raise SystemExit(f"screenshots: timed out waiting for {what}")
        spin(100)

def main(argv: list[str]) -> int:
    out = Path(argv[0] if argv else "docs/screenshots")
    out.mkdir(parents=True, exist_ok=True)
    from PySide6.QtWidgets import QApplication

    import pyqtgraph as pg
    from app.main import setup_logging
    from app.main_window import MainWindow
    from engine.line.priority import responsive_gil
    from app.services import Services
    from app.tasks import ErrorHandler
    from engine.settings import CameraSettings, Settings, save_settings
    from engine.train import default_teacher_path

    pg.setConfigOptions(antialias=True, background="w", foreground="k")
    responsive_gil()
    shipped = default_teacher_path("small").is_file()
    data = Path(tempfile.mkdtemp(prefix="inspect-shots-"))
    s = replace(Settings(camera=CameraSettings(fps=8.0)), operator="anna",
                products={"bracket": Settings().product}, current_product="bracket",
                image_size=128 if shipped else 64, training_steps=80 if shipped else 60,
                good_frames=30, teacher="default" if shipped else "random",
                penalty="default" if shipped else "none")
    save_settings(s, data / "settings.json")
    setup_logging(data)
    app = QApplication.instance() or QApplication(sys.argv[:1])
    services = Services(data, ErrorHandler(), backend="auto")
    w = MainWindow(services)
    w.resize(1360, 860)
    w.show()
    w.start_up()

    def shot(name: str, settle: bool = True) -> None:
        if settle:
            spin(400)
        path = out / f"{name}.png"
        w.grab().scaledToWidth(1100).save(str(path), "PNG", 6)
        print(f"{path}  {path.stat().st_size // 1024} KB")

    wait(lambda: services.log is not None, 60, "the log")
    wait(lambda: w.live.last_result is not None, 30, "live frames")
    shot("live-no-model")
    w.tabs.setCurrentWidget(w.learn)
    w.learn.capture()
    wait(lambda: w.learn.thumbs.count() >= 30, 60, "the capture")
    # What the networks look at: a region, a polygon and tiles drawn on the first picture.
    w.learn.tiling.setChecked(True)
    w.learn.roi.setText("20, 16, 280, 208")
    w.learn.polygon.setText("20,16; 300,16; 300,224; 60,224")
    shot("learn-layout")
    w.learn.tiling.setChecked(False)                 # the quick model for the other shots
    w.learn.roi.setText("")
    w.learn.polygon.setText("")
    w.learn.train()
    wait(lambda: w.learn.progress.value() > 0 or w.learn.result is not None, 600, "training progress")
    shot("learn-training")
    # staged Learn (the default): the quick model is saved and live first, EfficientAD trains
    # behind it, then the comparison is shown and the better one judges
    wait(lambda: "Staged Learn" in w.learn.result_text.text(), 1800, "both models of a staged Learn")
    w.tabs.setCurrentWidget(w.learn)                 # a saved model switches to Live
    shot("learn-result")
    wait(lambda: services.model_info is not None and services.model_info.model_id, 60, "the model")
    w.tabs.setCurrentWidget(w.live)
    wait(lambda: w.live.verdict.text() == "FAIL" and len(w.live.recent_scores) > 60,
         300, "a FAIL on the live screen")
    shot("live-fail", settle=False)
    w.tabs.setCurrentWidget(w.threshold)
    w.threshold.review_on.setChecked(True)
    w.threshold.review.setValue(w.threshold.number.value() * 0.8)
    w.threshold.apply()
    spin(1500)
    shot("threshold")
    w.tabs.setCurrentWidget(w.history)
    services.log.writer.flush(10)
    w.history.refresh()
    wait(lambda: w.history.model.rowCount() > 2, 30, "history rows")
    w.history.table.selectRow(1)
    w.history.mark_selected("false_reject")
    w.history.table.selectRow(0)
    wait(lambda: w.history.zoom.item.image is not None, 30, "the detail picture")
    w.history.mark_selected("confirmed_defect")
    spin(1500)
    shot("history")
    w.tabs.setCurrentWidget(w.settings_screen)
    shot("settings")
    w.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
