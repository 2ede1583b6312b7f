"""`python main.py bench gui`: does the GUI thread stay responsive while training and live
scoring run at once? A probe timer fires every few ms on the GUI thread; every gap beyond
its interval is a stall. Prints max and p99 stall in ms and whether max < 100 ms.

The same StallProbe is used by tests/test_app_stall.py."""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PySide6.QtCore import QElapsedTimer, QObject, QTimer

LIMIT_MS = 100.0


class StallProbe(QObject):
    """Measures how late the GUI event loop runs a timer: late = stalled."""

    def __init__(self, interval_ms: int = 5):
        super().__init__()
        self.interval_ms = interval_ms
        self.gaps_ms: list[float] = []
        self.times_ms: list[float] = []     # when each gap ended (ms since start)
        self._clock = QElapsedTimer()
        self._timer = QTimer(self)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self._tick)
        self._last: float | None = None

    def start(self) -> None:
        self._clock.start()
        self._last = None
        self._timer.start()

    def stop(self) -> None:
        self._timer.stop()

    def _tick(self) -> None:
        now = self._clock.nsecsElapsed() / 1e6
        if self._last is not None:
            self.gaps_ms.append(now - self._last)
            self.times_ms.append(now)
        self._last = now

    def stalls(self) -> np.ndarray:
        g = np.asarray(self.gaps_ms, dtype=np.float64)
        return np.clip(g - self.interval_ms, 0.0, None)

    def summary(self) -> dict:
        s = self.stalls()
        if s.size == 0:
            return {"ticks": 0, "max_stall_ms": float("nan"), "p99_stall_ms": float("nan"), "ok": False}
        worst = np.argsort(s)[-3:][::-1]
        return {"ticks": int(s.size), "max_stall_ms": round(float(s.max()), 1),
                "worst_at_s": [round(self.times_ms[i] / 1000, 2) for i in worst],
                "p99_stall_ms": round(float(np.quantile(s, 0.99)), 1),
                "ok": bool(s.max() < LIMIT_MS)}


def run_loaded(window, probe: StallProbe, seconds: float, train_steps: int,
               process_events) -> dict:
    """With the window live: start training on captured frames and keep scoring, probe
    the event loop for `seconds`, then cancel training. -> probe summary + counters."""
    from engine.model import ModelConfig
    from engine.train import TrainConfig, train
    services = window.services
    s = services.settings
    frames: list = []
    services.pipeline.capture(12, frames.extend)
    deadline = time.monotonic() + 60
    while len(frames) < 12 and time.monotonic() < deadline:
        process_events(50)
    if len(frames) < 12:
        raise RuntimeError("the camera delivered no frames to learn from")
    images = [f.rgb for f in frames]
    cfg = TrainConfig(model=ModelConfig(size=s.model_size, image_size=s.image_size),
                      steps=train_steps, teacher=s.teacher, penalty=s.penalty, device=s.device)
    progress_msgs: list[str] = []
    job = services.tasks.run("Bench training", lambda p, stop: train(cfg, images, p, stop),
                             on_progress=lambda f, m: progress_msgs.append(m), report=False)
    results: list = []
    services.live_result.connect(results.append)
    probe.start()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        process_events(20)
    probe.stop()
    services.live_result.disconnect(results.append)
    training_running = job.running
    job.cancel()
    job.wait(60)
    out = probe.summary()
    out.update({"seconds": seconds, "live_frames_drawn": len(results),
                "scored": sum(r.verdict is not None for r in results),
                "training_steps_reported": progress_msgs[-1] if progress_msgs else "",
                "training_ran_throughout": training_running})
    return out


def spin(ms: int) -> None:
    """Run the real event loop for ms milliseconds (as app.exec() would)."""
    from PySide6.QtCore import QEventLoop
    loop = QEventLoop()
    QTimer.singleShot(ms, loop.quit)
    loop.exec()


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python main.py bench gui", description=__doc__)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--steps", type=int, default=100_000, help="training steps (cancelled at the end)")
    p.add_argument("--image-size", type=int, default=256)
    p.add_argument("--teacher", default="auto",
                   help="auto: the shipped teacher if present, else random")
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from dataclasses import replace

    from PySide6.QtWidgets import QApplication

    from app.main import setup_logging
    from app.main_window import MainWindow
    from app.services import Services
    from app.tasks import ErrorHandler
    from engine.settings import Settings, save_settings
    from engine.train import default_teacher_path

    teacher = a.teacher
    if teacher == "auto":
        teacher = "default" if default_teacher_path("small").is_file() else "random"
    with tempfile.TemporaryDirectory(prefix="inspect-bench-gui-") as tmp:
        data = Path(tmp)
        # A scoring model so that live frames are really scored while training runs.
        from engine.camera.simulated import SimulatedLine
        from engine.model import EfficientAD, ModelConfig, save_checkpoint
        model_path = data / "models" / "bench.pt"
        save_checkpoint(EfficientAD(ModelConfig(image_size=a.image_size)), model_path,
                        {"threshold": 1.0, "model_id": "bench", "holdout_scores": [0.1, 0.2]})
        from engine.settings import ProductSettings
        s = Settings()
        s = replace(s, image_size=a.image_size, teacher=teacher,
                    penalty="default" if teacher == "default" else "none",
                    products={"bench": ProductSettings(model_file=str(model_path))},
                    current_product="bench")
        save_settings(s, data / "settings.json")
        setup_logging(data)
        from engine.line.priority import preload_heavy_modules, responsive_gil
        responsive_gil()
        app = QApplication.instance() or QApplication(sys.argv[:1])
        preload_heavy_modules()
        services = Services(data, ErrorHandler(), backend="auto")
        window = MainWindow(services)
        window.show()
        window.start_up()
        probe = StallProbe()
        result = run_loaded(window, probe, a.seconds, a.steps, spin)
        window.close()
        result.update({"image_size": a.image_size, "teacher": teacher,
                       "device": services.pipeline.device, "backend": "auto"})
    if a.json:
        print(json.dumps(result))
    else:
        print(f"GUI event loop while training and scoring at once ({a.seconds:g} s, "
              f"{a.image_size} px, teacher {teacher}):")
        print(f"  max stall {result['max_stall_ms']} ms, p99 stall {result['p99_stall_ms']} ms "
              f"over {result['ticks']} probe ticks -> "
              f"{'OK (< 100 ms)' if result['ok'] else 'TOO SLOW (>= 100 ms)'}")
        print(f"  live frames drawn {result['live_frames_drawn']}, scored {result['scored']}; "
              f"training: {result['training_steps_reported']}")
    return 0 if result["ok"] else 1
