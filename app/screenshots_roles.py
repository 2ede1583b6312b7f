"""Screenshots of the roles, audit and part-6 screens at 1280×800, for docs/screenshots:

    xvfb-run -s "-screen 0 1400x900x24" .venv/bin/python -m app.screenshots_roles docs/screenshots

(or with QT_QPA_PLATFORM=offscreen where there is no Xvfb). Drives the real window on a fresh
data folder without training: users and roles set up on the Users page, a few audited
changes, the operator's view of Threshold (refused, the tooltip naming the role), Learn
with a region dragged on the picture, Live with a near-miss PASS, the Audit trail."""
from __future__ import annotations

from app.screenshots import spin, wait
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path



def main(argv: list[str]) -> int:
    out = Path(argv[0] if argv else "docs/screenshots")
    out.mkdir(parents=True, exist_ok=True)
    from PySide6.QtCore import QPoint, Qt
    from PySide6.QtGui import QPainter
    from PySide6.QtWidgets import QApplication, QToolTip

    import pyqtgraph as pg
    from app.main import setup_logging
    from app.main_window import MainWindow
    from app.services import Services
    from app.tasks import ErrorHandler
    from engine.line import LiveResult
    from engine.settings import CameraSettings, ProductSettings, Settings, save_settings
    from engine.types import Decision, Frame, Verdict
    from engine.users import ADMINISTRATOR, ENGINEER, OPERATOR

    pg.setConfigOptions(antialias=True, background="w", foreground="k")
    data = Path(tempfile.mkdtemp(prefix="inspect-shots-roles-"))
    s = replace(Settings(camera=CameraSettings(fps=8.0)), operator="anna",
                products={"bracket": ProductSettings(threshold=0.08)}, current_product="bracket")
    save_settings(s, data / "settings.json")
    setup_logging(data)
    app = QApplication.instance() or QApplication(sys.argv[:1])
    services = Services(data, ErrorHandler(), backend="auto")
    w = MainWindow(services)
    w.resize(1280, 800)
    w.show()
    w.start_up(autostart=False)

    def shot(name: str, tip: tuple | None = None) -> None:
        spin(400)
        pm = w.grab()
        if tip is not None:                  # the tooltip as the operator sees it
            widget, text = tip
            qp = QPainter(pm)
            at = widget.mapTo(w, QPoint(0, widget.height() + 4))
            rect = qp.fontMetrics().boundingRect(text).adjusted(-6, -4, 6, 4)
            rect.moveTopLeft(QPoint(max(0, min(at.x() - 200, w.width() - rect.width() - 4)), at.y()))
            qp.fillRect(rect, Qt.white)
            qp.setPen(Qt.black)
            qp.drawRect(rect)
            qp.drawText(rect, Qt.AlignCenter, text)
            qp.end()
        path = out / f"{name}.png"
        pm.save(str(path), "PNG", 6)
        print(f"{path}  {pm.width()}x{pm.height()}  {path.stat().st_size // 1024} KB")

    wait(lambda: services.log is not None, 60, "the log")
    # Users page: three users, roles on (as the administrator, before roles are on)
    acc = services.access
    st = acc.store
    for name, role, pin in (("anna", ADMINISTRATOR, "1111"), ("ed", ENGINEER, "2222"),
                            ("olga", OPERATOR, "3333")):
        st = st.with_user(name, role, pin)
    acc.change_store(replace(st, enabled=True, idle_minutes=5.0))
    assert acc.login("anna", "1111")
    w.access_controls.refresh()
    w.tabs.setCurrentWidget(w.users_screen)
    w.users_screen.table.selectRow(1)
    shot("users")
    # a few changes for the trail
    services.save(replace(services.settings, station="line 3"))
    services.save(replace(services.settings, camera=replace(services.settings.camera, exposure_us=1200.0)))
    acc.logout()
    assert acc.login("ed", "2222")
    services.save(services.settings.with_product("bracket", replace(services.settings.product, threshold=0.072)),
                  detail="from the Threshold screen")
    services.save(replace(services.settings, layout=replace(services.settings.layout, roi=(24, 16, 272, 208))))
    acc.logout()
    w.access_controls.refresh()
    # the operator's Threshold screen: Apply refused, the tooltip says which role
    w.tabs.setCurrentWidget(w.threshold)
    w.threshold.setEnabled(True)
    shot("roles-operator-threshold", tip=(w.threshold.apply_button, w.threshold.apply_button.toolTip()))
    # Learn: the region dragged on the picture, the boxes in sync
    assert acc.login("ed", "2222")
    w.access_controls.refresh()
    from engine.camera.simulated import SimulatedLineConfig, SimulatedLineSource
    src = SimulatedLineSource(SimulatedLineConfig(fps=50.0, defect_rate=0.0))
    src.open()
    frames = [src.read(1.0) for _ in range(12)]
    src.close()
    learn = w.learn
    w.tabs.setCurrentWidget(learn)
    for f in frames:
        learn._add_image(f.rgb, f"frame {f.id}")
    learn._update_buttons()
    spin(200)
    canvas = learn.layout_preview.canvas
    learn.layout_preview.clear_shapes()          # a new region, drawn from scratch

    def at(x, y):
        return canvas.to_widget(x, y).toPoint()
    from PySide6.QtTest import QTest
    QTest.mousePress(canvas, Qt.LeftButton, pos=at(40, 30))
    QTest.mouseMove(canvas, at(200, 150))
    QTest.mouseMove(canvas, at(290, 215))
    QTest.mouseRelease(canvas, Qt.LeftButton, pos=at(290, 215))
    learn.layout_preview.polygon_mode.setChecked(True)
    for p in ((40, 30), (290, 30), (290, 215), (90, 215)):
        QTest.mouseClick(canvas, Qt.LeftButton, pos=at(*p))
    shot("learn-roi-drag")
    # Live: a near-miss PASS, large enough to read from two metres
    w.tabs.setCurrentWidget(w.live)
    f = frames[3]
    r = LiveResult(f, Verdict(f.id, 0.0687, Decision.PASS, 0.072), f.rgb, "bracket", 8.0,
                   412, 9, 0, True)
    w.live._on_result(r)
    w.live._draw()
    shot("live-near-miss")
    # the audit trail
    w.tabs.setCurrentWidget(w.audit_screen)
    wait(lambda: w.audit_screen.table.rowCount() >= 8, 20, "audit rows")
    shot("audit")
    # History: FAILs logged while it is open appear by themselves (no Refresh)
    from engine.log import InspectionRecord
    w.tabs.setCurrentWidget(w.history)
    spin(300)
    for i, (f, score) in enumerate(zip(frames[4:9], (0.091, 0.132, 0.077, 0.104, 0.085))):
        v = Verdict(f.id, score, Decision.FAIL, 0.072, model_id="bracket-demo")
        services.log.submit(InspectionRecord(v, time.time() - 40 + 8 * i, "line 3", "sim",
                                             "bracket", image=f.rgb), timeout=5)
        w.services.live_result.emit(LiveResult(f, v, f.rgb, "bracket", 8.0, 420 + i, 10 + i, 0, True))
    wait(lambda: w.history.model.rowCount() == 5, 20, "the new FAILs in History")
    w.history.table.selectRow(0)
    w.history.mark_selected("confirmed_defect")
    spin(800)
    w.history.table.selectRow(1)
    w.history.mark_selected("false_reject")
    spin(800)
    w.history.table.selectRow(0)
    shot("history-exports")
    w.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
