"""Screenshots of the model-version screens (issue 18, parts 1-3), from the running app:

    xvfb-run -s "-screen 0 1400x900x24" .venv/bin/python -m app.screenshots_models docs/screenshots

A fresh data folder: product "bracket" with two versions trained on parts of the simulated
line (the shipped teacher, 128 px, 80 and 240 steps; the relearn 120), a log of parts judged by the one in use, some marked by the
operator: good parts with a new supplier's label that it rejects (false rejects) and real
defects (confirmed). Then: Versions (comparing the two), Threshold from known defects
(after Propose), Relearn side by side, Versions with the relearned one in use, History's link.
Each is grabbed with QWidget.grab()."""
from __future__ import annotations

from app.screenshots import spin, wait
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np


def supplier_label(rgb: np.ndarray) -> np.ndarray:
    """A good part with a small green label: new to the model, fine for the customer."""
    import cv2
    out = rgb.copy()
    h, w = out.shape[:2]
    cv2.rectangle(out, (int(w * 0.12), int(h * 0.1)), (int(w * 0.26), int(h * 0.2)), (40, 170, 70), -1)
    return out


def parts(n_good: int, n_label: int, n_defect: int):
    from engine.camera.simulated import SimulatedLine, SimulatedLineConfig
    line = SimulatedLine(SimulatedLineConfig(seed=3, defect_rate=0.3,
                                             defect_kinds=("stain", "scratch", "missing")))
    good, defects, i = [], [], 0
    while len(good) < n_good + n_label or len(defects) < n_defect:
        rgb, _mask, kind, _plan = line.frame_arrays(i)
        i += 1
        (good if kind == "good" else defects).append(rgb)
    return good[:n_good], [supplier_label(g) for g in good[n_good:n_good + n_label]], defects[:n_defect]


def _train_versions(models: Path, good, size: int, steps: int, teacher: str, penalty: str):
    """An early short version and the one in use."""
    from engine.model import ModelConfig, save_checkpoint
    from engine.train import TrainConfig, train
    cfg = TrainConfig(model=ModelConfig(image_size=size), steps=steps, teacher=teacher,
                      penalty=penalty, device="cpu")
    out = []
    for n, day in ((steps // 3, "2026-11-20T07:10:00Z"), (steps, "2026-11-27T14:40:00Z")):
        r = train(replace(cfg, steps=n), good)
        meta = {**r.meta, "created_utc": day}
        path = models / f"bracket-{meta['model_id']}.pt"
        save_checkpoint(r.model, path, meta)
        out.append((path, meta, r))
    return out


def main(argv: list[str]) -> int:
    out = Path(argv[0] if argv else "docs/screenshots")
    out.mkdir(parents=True, exist_ok=True)
    from PySide6.QtWidgets import QApplication

    import pyqtgraph as pg
    from app.main import setup_logging
    from app.main_window import MainWindow
    from app.services import Services
    from app.tasks import ErrorHandler
    from engine import versions
    from engine.log import InspectionRecord, Label
    from engine.meta import ModelMeta
    from engine.scoring import Scorer
    from engine.settings import CameraSettings, ProductSettings, Settings, save_settings
    from engine.types import Decision, Verdict

    pg.setConfigOptions(antialias=True, background="w", foreground="k")
    data = Path(tempfile.mkdtemp(prefix="inspect-models-shots-"))
    from engine.train import default_teacher_path
    shipped = default_teacher_path("small").is_file()
    teacher, penalty = ("default", "default") if shipped else ("random", "none")
    size, steps = (128, 240) if shipped else (64, 150)
    good, labelled, defects = parts(30, 6, 14)
    trained = _train_versions(data / "models", good, size, steps, teacher, penalty)
    (p1, m1, _), (p2, m2, r2) = trained
    s = replace(Settings(camera=CameraSettings(fps=4.0)), operator="anna", image_size=size,
                training_steps=steps // 2, teacher=teacher, penalty=penalty, device="cpu",
                products={"bracket": ProductSettings(model_file=str(p2))}, current_product="bracket")
    save_settings(s, data / "settings.json")
    setup_logging(data)
    app = QApplication.instance() or QApplication(sys.argv[:1])
    services = Services(data, ErrorHandler(), backend="eager")
    w = MainWindow(services)
    w.resize(1360, 860)
    w.show()
    w.start_up(autostart=False)

    def shot(name: str, widget=None) -> None:
        spin(600)
        path = out / f"{name}.png"
        (widget or w).grab().scaledToWidth(1100).save(str(path), "PNG", 6)
        print(f"{path}  {path.stat().st_size // 1024} KB")

    wait(lambda: services.log is not None, 60, "the log")
    lg = services.log
    versions.register_learned(lg, p1, ModelMeta.from_dict(m1), "bracket", "anna", good)
    v2 = versions.register_learned(lg, p2, ModelMeta.from_dict(m2), "bracket", "ben", good)
    wait(lambda: services.model_info is not None and services.model_info.model_id == v2.model_id,
         60, "the model")
    # a shift judged by version 2: good parts, parts with the new label, defects
    scorer = Scorer(r2.model, r2.meta, device="cpu", backend="eager")
    t = scorer.threshold
    shift = [(g, None) for g in good[:24]] + [(x, "fr") for x in labelled] + [(d, "d") for d in defects]
    t0 = time.time() - 3600
    for i, (im, kind) in enumerate(shift):
        sc = float(scorer.score([im], with_maps=False).scores[0])
        v = Verdict(frame_id=i, score=sc, decision=Decision.FAIL if sc >= t else Decision.PASS,
                    threshold=t, model_id=v2.model_id)
        lg.submit(InspectionRecord(v, t0 + i * 20, "line-3", "sim", "bracket", image=im))
    lg.writer.flush(20)
    rows = sorted(lg.page(limit=500).rows, key=lambda r: r.frame_id)
    for r, (_im, kind) in zip(rows, shift):
        if kind == "fr" and r.verdict == Decision.FAIL:
            services.set_label(r.id, Label.FALSE_REJECT.value)
        elif kind == "d":
            services.set_label(r.id, Label.CONFIRMED_DEFECT.value)

    vs = w.versions_screen
    w.tabs.setCurrentWidget(vs)
    wait(lambda: vs.table.rowCount() == 2, 30, "versions")
    vs.select([v for v in vs.versions if v.model_id != v2.model_id][0].model_id)
    shot("versions")

    th = w.threshold
    w.tabs.setCurrentWidget(th)
    wait(lambda: th.known is not None and th.known.defects.size, 30, "known defects")
    th.target.setValue(2.0)
    th.propose()
    shot("threshold-known-defects")

    w.tabs.setCurrentWidget(w.learn)
    w.learn.relearn_button.click()
    dialog = w.learn.relearn_dialog
    wait(lambda: dialog.outcome is not None, 2400, "the relearned version")
    shot("relearn", dialog)
    dialog.accept_new()
    wait(lambda: services.model_info.model_id not in ("", v2.model_id), 60, "the new version")
    w.tabs.setCurrentWidget(vs)
    wait(lambda: vs.table.rowCount() == 3, 30, "three versions")
    shot("versions-relearned")

    w.tabs.setCurrentWidget(w.history)
    w.history.refresh()
    wait(lambda: w.history.model.rowCount() > 0, 30, "history rows")
    w.history.table.selectRow(0)
    wait(lambda: w.history.zoom.item.image is not None, 30, "the detail picture")
    shot("history-version-link")
    w.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
