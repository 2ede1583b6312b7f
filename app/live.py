"""Live screen: the camera picture with the anomaly map, a big PASS / FAIL / REVIEW, counters,
frame rate and latency, a scrolling plot of recent scores with the threshold, camera choice.

Results arrive from the scoring thread (Services.live_result); the GUI thread only draws. A
burst of results is coalesced: the picture is drawn at most ~30 times per second."""
from __future__ import annotations

import time
from collections import deque

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QColor, QFont, QPalette
from PySide6.QtWidgets import (QCheckBox, QComboBox, QGridLayout, QHBoxLayout, QLabel,
                               QPushButton, QSlider, QSplitter, QVBoxLayout, QWidget)

from app.widgets import PictureView, label_words
from engine.camera.kinds import LABELS
from engine.settings import SOURCE_KINDS
from engine.types import Decision

VERDICT_STYLE = {
    "PASS": "background:#1b7f3b; color:white;",
    "FAIL": "background:#c62828; color:white;",
    "REVIEW": "background:#f9a825; color:black;",
    "NONE": "background:#555; color:#ddd;",
    "STOPPED": "background:#c62828; color:white;",
    "NEAR": "background:#1b7f3b; color:white; border:10px solid #f9a825;",   # a near-miss PASS
}
RECENT = 300          # scores kept for the plot and the Threshold screen
NEAR_MISS = 0.9       # a PASS scoring at least this share of the threshold is a near miss
# Read from two metres: the score's digits ~12 mm, the threshold's ~8 mm tall at 96 dpi.
SCORE_PX, THRESHOLD_PX = 46, 32


def near_miss(score: float, threshold: float, decision: Decision) -> bool:
    """A PASS within 10% of the fail threshold: the part passed, but only just."""
    return (decision == Decision.PASS and np.isfinite(score) and np.isfinite(threshold)
            and threshold > 0 and score >= NEAR_MISS * threshold)


def score_html(score: float, threshold: float) -> str:
    return (f"<div style='font-size:{SCORE_PX}px; font-weight:bold'>{score:.3f}</div>"
            f"<div style='font-size:{THRESHOLD_PX}px'>threshold {threshold:.3f}</div>")


def _nice_ceiling(v: float) -> float:
    """1, 2 or 5 times a power of ten, at or above v: the y axis changes in visible steps."""
    p = 10.0 ** np.floor(np.log10(v))
    for m in (1.0, 2.0, 5.0, 10.0):
        if m * p >= v:
            return m * p
    return 10.0 * p


class LiveScreen(QWidget):
    def __init__(self, services):
        super().__init__()
        self.services = services
        self.recent_scores: deque[float] = deque(maxlen=RECENT)
        self.recent_labels: deque[str | None] = deque(maxlen=RECENT)   # simulator truth if any
        self.last_result = None
        self.last_defect = None          # (wall_time, frame_id, source) of the latest FAIL/REVIEW
        self._pending = None
        self._plot_drawn = 0.0
        self._threshold: float | None = None
        self._review: float | None = None
        self._build()
        services.live_result.connect(self._on_result)
        services.camera_status.connect(self._on_camera_status)
        services.model_changed.connect(self._on_model)
        services.log_ready.connect(self._on_log_ready)
        self._draw_timer = QTimer(self)
        self._draw_timer.timeout.connect(self._draw)
        self._draw_timer.start(33)
        self._log_timer = QTimer(self)           # log health: spooled counts, a failing writer
        self._log_timer.timeout.connect(self._refresh_banner)
        self._log_timer.start(1000)
        self._camera_state = "stopped"
        self._halted = ""
        self._refresh_banner()

    # ---- layout ------------------------------------------------------------------------
    def _build(self) -> None:
        self.banner = QLabel()
        self.banner.setWordWrap(True)
        self.banner.setObjectName("banner")
        self.banner.setStyleSheet("background:#fff3cd; color:#5c4400; padding:8px; font-size:15px;")
        self.picture = PictureView()

        self.verdict = QLabel("—")
        self.verdict.setAlignment(Qt.AlignCenter)
        f = QFont()
        f.setPointSize(64)
        f.setBold(True)
        self.verdict.setFont(f)
        self.verdict.setMinimumHeight(120)
        self._set_verdict("NONE", "—")
        self.score_label = QLabel("score —")
        self.score_label.setObjectName("score")
        self.score_label.setAlignment(Qt.AlignCenter)
        self.score_label.setWordWrap(True)
        self.score_label.setStyleSheet("font-size:18px;")
        self.near_miss_label = QLabel("")
        self.near_miss_label.setObjectName("near-miss")
        self.near_miss_label.setAlignment(Qt.AlignCenter)
        # Always in place (blank when not a near miss): the panel never jumps.
        self.near_miss_label.setFixedHeight(58)
        pal = self.near_miss_label.palette()
        pal.setColor(QPalette.Window, QColor("#f9a825"))
        pal.setColor(QPalette.WindowText, QColor("black"))
        self.near_miss_label.setPalette(pal)
        self._show_near_miss(None)

        big = "font-size:18px;"
        self.counter_labels = {}
        grid = QGridLayout()
        for i, (key, text) in enumerate((("parts", "Parts"), ("fails", "Fails"),
                                         ("reviews", "Review"), ("yield", "Yield"),
                                         ("fps", "Camera"), ("latency", "Scoring"))):
            name = QLabel(text)
            name.setStyleSheet(big)
            value = QLabel("—")
            value.setStyleSheet(big + "font-weight:bold;")
            value.setAlignment(Qt.AlignRight)
            # two pairs a row: the larger score above keeps the panel within 1280×800
            grid.addWidget(name, i // 2, 2 * (i % 2))
            grid.addWidget(value, i // 2, 2 * (i % 2) + 1)
            self.counter_labels[key] = value
        grid.setHorizontalSpacing(14)
        reset = QPushButton("Reset counters")
        reset.clicked.connect(self._reset_counters)

        self.overlay_box = QCheckBox("Show anomaly map")
        self.overlay_box.setChecked(True)
        self.opacity = QSlider(Qt.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.setValue(50)
        self.opacity.setToolTip("Opacity of the anomaly map")
        for w in (self.overlay_box, self.opacity):
            (w.toggled if w is self.overlay_box else w.valueChanged).connect(self._overlay_changed)

        self.camera_box = QComboBox()
        for kind in SOURCE_KINDS:
            self.camera_box.addItem(LABELS[kind], kind)
        self.camera_box.setCurrentIndex(self.camera_box.findData(self.services.settings.camera.source))
        self.camera_box.setToolTip("Camera source (details in Settings)")
        self.camera_box.activated.connect(self._camera_chosen)
        self.start_button = QPushButton("Start (F5)")
        self.start_button.setStyleSheet("font-size:16px; padding:6px;")
        self.start_button.clicked.connect(lambda: self.window().toggle_live())

        side = QVBoxLayout()
        side.addWidget(self.verdict)
        side.addWidget(self.score_label)
        side.addWidget(self.near_miss_label)
        side.addLayout(grid)
        side.addWidget(reset)
        side.addSpacing(12)
        row = QHBoxLayout()
        row.addWidget(QLabel("Camera:"))
        row.addWidget(self.camera_box, 1)
        side.addLayout(row)
        side.addWidget(self.start_button)
        side.addWidget(self.overlay_box)
        row = QHBoxLayout()
        row.addWidget(QLabel("Opacity"))
        row.addWidget(self.opacity, 1)
        side.addLayout(row)
        side.addStretch(1)
        side_w = QWidget()
        side_w.setLayout(side)
        side_w.setMinimumWidth(300)
        side_w.setMaximumWidth(420)

        self.plot = pg.PlotWidget()
        self.plot.setMinimumHeight(90)
        self.plot.setLabel("left", "score")
        self.plot.setLabel("bottom", "recent parts")
        self.plot.showGrid(y=True, alpha=0.3)
        self.plot.setMouseEnabled(x=False, y=False)
        # Fixed ranges: the axes are only re-rendered when the range really changes
        # (re-rendering them for every frame cost the GUI thread tens of ms).
        self.plot.enableAutoRange(False)
        self.plot.setXRange(-RECENT + 1, 0, padding=0.02)
        self.plot.setYRange(0, 1, padding=0)
        self._y_top = 0.0
        self.curve = self.plot.plot(pen=pg.mkPen("#1f77b4", width=2))
        self.fail_dots = self.plot.plot(pen=None, symbol="o", symbolSize=6, symbolBrush="#c62828")
        self.threshold_line = pg.InfiniteLine(angle=0, pen=pg.mkPen("#c62828", width=2, style=Qt.DashLine))
        self.review_line = pg.InfiniteLine(angle=0, pen=pg.mkPen("#f9a825", width=2, style=Qt.DotLine))
        self.plot.addItem(self.threshold_line)
        self.plot.addItem(self.review_line)
        self.review_line.hide()

        top = QSplitter(Qt.Horizontal)
        top.addWidget(self.picture)
        top.addWidget(side_w)
        top.setStretchFactor(0, 1)
        self.splitter = QSplitter(Qt.Vertical)
        self.splitter.addWidget(top)
        self.splitter.addWidget(self.plot)
        self.splitter.setStretchFactor(0, 4)
        self.splitter.setStretchFactor(1, 1)
        lay = QVBoxLayout(self)
        lay.addWidget(self.banner)
        lay.addWidget(self.splitter, 1)

    # ---- incoming (GUI thread) ---------------------------------------------------------
    def _on_result(self, r) -> None:
        self.last_result = r
        self._pending = r
        if r.halted != self._halted:             # judging stopped or resumed: say so now
            self._halted = r.halted
            self._refresh_banner()
        if r.verdict is not None:
            self.recent_scores.append(r.verdict.score)
            self.recent_labels.append(r.frame.label)
            self._threshold = r.verdict.threshold
            if r.verdict.decision != Decision.PASS:
                self.last_defect = (r.frame.wall_time, r.frame.id, r.frame.source)

    def _draw(self) -> None:
        r, self._pending = self._pending, None
        if r is None:
            return
        self.picture.set_rgb(r.shown)
        c = self.counter_labels
        near = False
        if r.halted:
            self._set_verdict("STOPPED", "STOPPED")
            self.score_label.setText("not judging: the log cannot record verdicts")
        elif r.verdict is None:
            self._set_verdict("NONE", "NO MODEL")
            self.score_label.setText("no model for this product")
        else:
            v = r.verdict
            d = v.decision.value
            near = near_miss(v.score, v.threshold, v.decision)
            self._set_verdict("NEAR" if near else d, d)
            self.score_label.setText(score_html(v.score, v.threshold))
            self._show_near_miss(v.score / v.threshold if near else None)
            c["latency"].setText(f"{r.verdict.latency_ms:.0f} ms")
        if not near:
            self._show_near_miss(None)
        c["parts"].setText(f"{r.parts:,}")
        c["fails"].setText(f"{r.fails:,}")
        c["reviews"].setText(f"{r.reviews:,}")
        c["yield"].setText(f"{100.0 * (r.parts - r.fails) / r.parts:.1f} %" if r.parts else "—")
        c["fps"].setText(f"{r.camera_fps:.1f} fps")
        now = time.monotonic()
        if now - self._plot_drawn >= 0.25:         # the plot moves 4x a second: plenty to read
            self._plot_drawn = now
            self._draw_plot()

    def _draw_plot(self) -> None:
        self.threshold_line.setVisible(self._threshold is not None)
        if not self.recent_scores:
            self.curve.setData([], [])
            self.fail_dots.setData([], [])
            return
        y = np.fromiter(self.recent_scores, dtype=np.float64)
        x = np.arange(len(y)) - len(y) + 1
        self.curve.setData(x, y)
        t = self._threshold
        if t is not None:
            self.threshold_line.setPos(t)
            bad = y >= t
            self.fail_dots.setData(x[bad], y[bad])
        if self._review is not None:
            self.review_line.setPos(self._review)
            self.review_line.show()
        else:
            self.review_line.hide()
        top = _nice_ceiling(max(float(y.max()) * 1.1, 1.5 * (t or 0.0), 1e-3))
        if top != self._y_top:
            self._y_top = top
            self.plot.setYRange(min(0.0, float(y.min())), top, padding=0)

    def _show_near_miss(self, share: float | None) -> None:
        """The cue under the score: None blanks it (its place is kept)."""
        text = "" if share is None else (
            f"<div style='font-size:24px; font-weight:bold'>NEAR MISS</div>"
            f"<div style='font-size:16px'>{100 * share:.0f}% of the threshold</div>")
        if text != self.near_miss_label.text():
            self.near_miss_label.setText(text)
        on = share is not None
        if self.near_miss_label.autoFillBackground() != on:
            # a palette fill, not a style sheet: parts may alternate near / not near at the
            # line's rate, and re-polishing a style sheet each time costs the GUI thread
            self.near_miss_label.setAutoFillBackground(on)
            self.near_miss_label.update()

    def _set_verdict(self, style: str, text: str) -> None:
        if (self.verdict.text(), getattr(self, "_verdict_style", None)) != (text, style):
            self._verdict_style = style
            self.verdict.setText(text)
            # PASS / FAIL as big as the panel allows; longer words a little smaller to fit
            size = 64 if len(text) <= 4 else 44 if len(text) <= 6 else 30
            self.verdict.setStyleSheet(VERDICT_STYLE[style] + f"font-size:{size}pt; font-weight:bold;")

    def _on_model(self, status) -> None:         # engine.line.ModelStatus
        self._threshold = status.threshold
        p = self.services.settings.product
        if p.threshold is not None:
            self._threshold = p.threshold
        self._review = p.review_below
        self.recent_scores.clear()
        self.recent_labels.clear()
        self._refresh_banner()
        self._draw_plot()

    def set_thresholds(self, threshold: float, review: float | None) -> None:
        """The Threshold screen applied new levels."""
        self._threshold, self._review = threshold, review
        self._draw_plot()

    def _on_camera_status(self, st) -> None:
        self._camera_state = st.state
        self._camera_message = st.message
        self._refresh_banner()

    def _on_log_ready(self, lg) -> None:
        self._refresh_banner()

    def _log_lines(self) -> tuple[list[str], bool]:
        """What the operator must know about the log: (lines, red). Red: parts are not
        judged because the log could not record them."""
        s = self.services
        if s.log_state in ("opening", "closed"):
            return [], False
        lines, why = [], s.log_problem()
        if why:
            lines.append(f"NOT JUDGING — {why}")
        lg = s.log
        writer = lg.writer if lg is not None else None
        spooled = writer.stats().spooled if writer is not None else 0
        if spooled:
            lines.append(f"The log database does not answer: {spooled:,} verdicts are spooled "
                         "on this PC and will be written when it answers.")
        if lg is not None and lg.abrupt_stop:
            lines.append(lg.abrupt_stop)
        return lines, bool(why)

    def _refresh_banner(self) -> None:
        lines, style = [], "background:#fff3cd; color:#5c4400;"
        if self._camera_state in ("lost", "error", "ended"):
            lines.append(("CAMERA LOST — " if self._camera_state == "lost" else "CAMERA — ")
                         + getattr(self, "_camera_message", ""))
            style = "background:#c62828; color:white;"
        info = self.services.model_info
        if info is not None and info.error:     # a model file that could not be used: say why
            lines.append(f"NO MODEL — {info.error}")
        elif info is not None and not info.model_id:
            lines.append(f"No model for this product ({self.services.settings.current_product}): "
                         "click Learn good parts.")
        log_lines, red = self._log_lines()
        lines += log_lines
        if red:
            style = "background:#c62828; color:white;"
        text = "\n".join(lines)
        style += " padding:8px; font-size:16px; font-weight:bold;"
        # Camera status arrives every second: touch the widget only when something changed
        # (setting a style sheet re-polishes the widget, which costs the GUI thread).
        if text != self.banner.text():
            self.banner.setText(text)
        if style != self.banner.styleSheet():
            self.banner.setStyleSheet(style)
        if self.banner.isVisible() != bool(lines):
            self.banner.setVisible(bool(lines))

    # ---- controls ------------------------------------------------------------------------
    def set_running(self, running: bool) -> None:
        self.start_button.setText("Stop (F5)" if running else "Start (F5)")
        if not running and self._camera_state not in ("lost", "error", "ended"):
            self._camera_state = "stopped"

    def _overlay_changed(self, *_):
        self.services.pipeline.set_overlay(self.overlay_box.isChecked(), self.opacity.value() / 100)

    def _camera_chosen(self, index: int) -> None:
        from dataclasses import replace
        s = self.services.settings
        try:
            self.services.save(replace(s, camera=replace(s.camera, source=self.camera_box.itemData(index))))
        except Exception as exc:  # noqa: BLE001 - e.g. a folder source without a folder
            self.camera_box.setCurrentIndex(self.camera_box.findData(s.camera.source))
            self.services.errors.report("Camera", exc)

    def _reset_counters(self) -> None:
        self.services.pipeline.reset_counters()
        for v in self.counter_labels.values():
            v.setText("—")

    def mark_last_defect(self, label: str) -> None:
        """Label the newest FAIL/REVIEW (keyboard shortcut on the line)."""
        lg, last = self.services.log, self.last_defect
        if lg is None or last is None:
            self.services.errors.report("Marking", "There is no logged defect to mark yet.", serious=False)
            return
        wall, frame_id, source = last
        who = self.services.access.actor.name

        def find_and_label():
            from engine.log import InspectionFilter
            if lg.writer is not None:
                lg.writer.flush(timeout=5)
            flt = InspectionFilter(start=wall - 0.01, end=wall + 0.01, cameras=(source,))
            for row in lg.page(flt, limit=20).rows:
                if row.frame_id == frame_id:
                    self.services.set_label(row.id, label)     # role check + audit
                    return row.id
            raise LookupError("the latest defect is not in the log yet")

        self.services.tasks.call(
            "Marking", find_and_label,
            on_done=lambda rid: self.window().statusBar().showMessage(
                f"Inspection {rid} marked as {label_words(label)} by {who}.", 5000))

    # ---- remembered layout ---------------------------------------------------------------
    def save_layout(self, q) -> None:
        q.setValue("live/splitter", self.splitter.saveState())
        q.setValue("live/overlay", self.overlay_box.isChecked())
        q.setValue("live/opacity", self.opacity.value())

    def restore_layout(self, q) -> None:
        if q.value("live/splitter") is not None:
            self.splitter.restoreState(q.value("live/splitter"))
        self.overlay_box.setChecked(str(q.value("live/overlay", "true")).lower() == "true")
        self.opacity.setValue(int(q.value("live/opacity", 50)))
        self._overlay_changed()
