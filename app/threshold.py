"""Threshold screen: a slider with a number box, histograms of held-out good scores and of
recent live scores, the expected false-reject rate on good parts, the recent frames re-judged
at once, an optional REVIEW band. Apply makes it live and logs who changed it and when.

With confirmed defects in the log (for the model in use), their scores show beside the good
ones, the false-reject and miss rates at every threshold are drawn, and Propose sets the
threshold that meets the engineer's target false-reject rate missing the fewest known
defects (engine/known_defects.py)."""
from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QCheckBox, QDoubleSpinBox, QGroupBox, QHBoxLayout, QLabel,
                               QPushButton, QSlider, QTableWidget, QTableWidgetItem,
                               QVBoxLayout, QWidget)

from app.widgets import histogram, score_edges
from engine.known_defects import KnownScores, curve, propose, rates_at, scores_from_log
from engine.types import Decision, decide

SLIDER_STEPS = 1000


class ThresholdScreen(QWidget):
    def __init__(self, services, live):
        super().__init__()
        self.services = services
        self.live = live                       # its recent scores are re-judged here
        self.holdout = np.zeros(0)
        self.known: KnownScores | None = None      # the log's scores for the model in use
        self.proposal = None                       # engine.known_defects.Proposal shown
        self.model_default: float | None = None
        self.max_value = 1.0
        self._syncing = False
        self._build()
        services.model_changed.connect(self._on_model)
        services.log_ready.connect(lambda _lg: self._load_changes())

    def _build(self) -> None:
        self.slider = QSlider(Qt.Horizontal)
        self.slider.setRange(1, SLIDER_STEPS)
        self.number = QDoubleSpinBox()
        self.number.setDecimals(4)
        self.number.setSingleStep(0.001)
        self.number.setRange(0.0001, 1000.0)
        self.review_on = QCheckBox("REVIEW band from")
        self.review = QDoubleSpinBox()
        self.review.setDecimals(4)
        self.review.setSingleStep(0.001)
        self.review.setRange(0.0001, 1000.0)
        self.review.setEnabled(False)
        self.slider.valueChanged.connect(self._slider_moved)
        self.number.valueChanged.connect(self._number_changed)
        self.review_on.toggled.connect(self._review_toggled)
        self.review.valueChanged.connect(lambda _v: self.rejudge())
        self.apply_button = QPushButton("Apply (logged)")
        self.apply_button.setStyleSheet("font-size:15px; padding:6px;")
        self.apply_button.clicked.connect(self.apply)
        self.default_button = QPushButton("Model's default")
        self.default_button.clicked.connect(self._to_default)

        controls = QGroupBox("Fail threshold")
        row = QHBoxLayout()
        row.addWidget(QLabel("Fail at score ≥"))
        row.addWidget(self.slider, 1)
        row.addWidget(self.number)
        row2 = QHBoxLayout()
        row2.addWidget(self.review_on)
        row2.addWidget(self.review)
        row2.addWidget(QLabel("(scores between this and the threshold: REVIEW)"))
        row2.addStretch(1)
        row2.addWidget(self.default_button)
        row2.addWidget(self.apply_button)
        v = QVBoxLayout(controls)
        v.addLayout(row)
        v.addLayout(row2)

        self.expect = QLabel()
        self.expect.setStyleSheet("font-size:16px;")
        self.expect.setWordWrap(True)
        self.rejudged = QLabel()
        self.rejudged.setStyleSheet("font-size:16px;")
        self.rejudged.setWordWrap(True)

        self.plot = pg.PlotWidget()
        self.plot.addLegend(offset=(-10, 10))
        self.plot.setLabel("bottom", "score")
        self.plot.setLabel("left", "share of parts")
        self.plot.setMouseEnabled(x=False, y=False)
        self.good_bars = pg.PlotDataItem(stepMode="center", fillLevel=0, brush=(27, 127, 59, 90),
                                         pen=pg.mkPen("#1b7f3b", width=2),
                                         name="good parts (held out; logged PASS, false rejects)")
        self.live_bars = pg.PlotDataItem(stepMode="center", fillLevel=0, brush=(31, 119, 180, 70),
                                         pen=pg.mkPen("#1f77b4", width=2), name="recent live parts")
        self.defect_bars = pg.PlotDataItem(stepMode="center", fillLevel=0, brush=(198, 40, 40, 90),
                                           pen=pg.mkPen("#c62828", width=2),
                                           name="confirmed defects")
        self.plot.addItem(self.good_bars)
        self.plot.addItem(self.live_bars)
        self.plot.addItem(self.defect_bars)
        self.line = pg.InfiniteLine(angle=90, movable=True, pen=pg.mkPen("#c62828", width=3))
        self.line.sigPositionChanged.connect(lambda l: self.number.setValue(float(l.value())))
        self.review_line = pg.InfiniteLine(angle=90, pen=pg.mkPen("#f9a825", width=2, style=Qt.DashLine))
        self.plot.addItem(self.line)
        self.plot.addItem(self.review_line)
        self.review_line.hide()

        self._build_known()

        self.changes = QTableWidget(0, 4)
        self.changes.setHorizontalHeaderLabels(["when (local)", "who", "old", "new"])
        self.changes.horizontalHeader().setStretchLastSection(True)
        self.changes.setColumnWidth(0, 170)
        self.changes.setEditTriggers(QTableWidget.NoEditTriggers)
        self.changes.setMaximumHeight(160)

        lay = QVBoxLayout(self)
        lay.addWidget(controls)
        lay.addWidget(self.expect)
        lay.addWidget(self.rejudged)
        plots = QHBoxLayout()
        plots.addWidget(self.plot, 3)
        plots.addWidget(self.rates_plot, 2)
        lay.addLayout(plots, 1)
        lay.addWidget(self.known_box)
        lay.addWidget(QLabel("Threshold changes for this product:"))
        lay.addWidget(self.changes)

    def _build_known(self) -> None:
        """Known defects: the rates at every threshold and the proposal."""
        self.rates_plot = pg.PlotWidget()
        self.rates_plot.addLegend(offset=(-10, 10))
        self.rates_plot.setLabel("bottom", "threshold")
        self.rates_plot.setLabel("left", "rate")
        self.rates_plot.setMouseEnabled(x=False, y=False)
        self.rates_plot.setYRange(0, 1)
        self.frr_curve = pg.PlotDataItem(pen=pg.mkPen("#1b7f3b", width=2), stepMode=None,
                                         name="good parts rejected")
        self.miss_curve = pg.PlotDataItem(pen=pg.mkPen("#c62828", width=2), name="known defects missed")
        self.rates_plot.addItem(self.frr_curve)
        self.rates_plot.addItem(self.miss_curve)
        self.rates_line = pg.InfiniteLine(angle=90, pen=pg.mkPen("#555", width=1, style=Qt.DashLine))
        self.rates_plot.addItem(self.rates_line)
        self.known_box = QGroupBox("From known defects")
        self.target = QDoubleSpinBox()
        self.target.setRange(0.0, 20.0)
        self.target.setDecimals(1)
        self.target.setSingleStep(0.5)
        self.target.setSuffix(" % of good parts")
        self.target.setValue(100 * self.services.settings.product.target_false_reject)
        self.propose_button = QPushButton("Propose threshold")
        self.propose_button.clicked.connect(self.propose)
        self.known_text = QLabel("")
        self.known_text.setWordWrap(True)
        self.known_text.setStyleSheet("font-size:15px;")
        row = QHBoxLayout()
        row.addWidget(QLabel("Reject at most"))
        row.addWidget(self.target)
        row.addWidget(self.propose_button)
        row.addWidget(self.known_text, 1)
        self.known_box.setLayout(row)

    def _good_scores(self) -> np.ndarray:
        """Held-out good parts and the log's good parts (PASS unlabelled, false rejects)."""
        logged = self.known.good if self.known is not None else np.zeros(0)
        return np.concatenate([self.holdout, logged])

    def _defect_scores(self) -> np.ndarray:
        return self.known.defects if self.known is not None else np.zeros(0)

    def _load_known(self) -> None:
        lg, info = self.services.log, self.services.model_info
        if lg is None or info is None or not info.model_id:
            return
        product, model_id = self.services.settings.current_product, info.model_id
        self.services.tasks.call("Reading known defects",
                                 lambda: scores_from_log(lg, product, model_id),
                                 on_done=self._show_known)

    def _show_known(self, known: KnownScores) -> None:
        self.known = known
        good, defects = self._good_scores(), known.defects
        if defects.size and good.size:
            c = curve(good, defects)
            self.frr_curve.setData(c.thresholds, c.false_reject_rate)
            self.miss_curve.setData(c.thresholds, c.miss_rate)
        else:
            self.frr_curve.setData([], [])
            self.miss_curve.setData([], [])
        self.propose_button.setEnabled(bool(defects.size and good.size))
        self.rejudge()

    def propose(self) -> None:
        p = propose(self._good_scores(), self._defect_scores(), self.target.value() / 100)
        if p is None:
            return
        self.proposal = p
        self.number.setValue(p.threshold)
        self.known_text.setText(p.sentence())

    def _is_proposed(self, t: float) -> bool:
        """The number box shows the proposal (rounded to its decimals)."""
        step = 0.5 * 10 ** -self.number.decimals()
        return self.proposal is not None and abs(self.proposal.threshold - t) <= step + 1e-12

    def _known_sentence(self, t: float) -> str:
        good, defects = self._good_scores(), self._defect_scores()
        k = self.known
        if k is None or not defects.size:
            other = (f" ({k.other_versions} were judged by another model version, whose "
                     "scores are on another scale)") if k is not None and k.other_versions else ""
            return ("No confirmed defects in the log for the model in use" + other +
                    ": mark them in History to set the threshold from real defects.")
        frr, miss = rates_at(good, defects, t)
        return (f"At {t:.4f}: {100 * frr:.1f} % of {good.size} good parts rejected, "
                f"{100 * miss:.0f} % of {defects.size} confirmed defects missed "
                f"({int(round(miss * defects.size))}).")

    # ---- model and data ------------------------------------------------------------------
    def _on_model(self, status) -> None:          # engine.line.ModelStatus
        scores = status.meta.holdout_scores if status.meta is not None else ()
        self.holdout = np.asarray(scores, dtype=np.float64)
        self.model_default = status.threshold
        p = self.services.settings.product
        current = p.threshold if p.threshold is not None else self.model_default
        self.setEnabled(self.model_default is not None)
        if current is None:
            self.expect.setText("No model for this product yet: click Learn good parts first.")
            return
        self._set_range(current)
        self._syncing = True
        self.review_on.setChecked(p.review_below is not None)
        self.review.setValue(p.review_below if p.review_below is not None else current * 0.8)
        self._syncing = False
        self.number.setValue(current)
        self.known, self.proposal = None, None
        self.rejudge()
        self._load_changes()
        self._load_known()

    def _set_range(self, current: float) -> None:
        live = np.fromiter(self.live.recent_scores, dtype=np.float64)
        edges = score_edges(self.holdout, np.concatenate([live, self._defect_scores()]),
                            extra=(current, self.model_default), bins=40)
        self.max_value = float(edges[-1])

    def on_shown(self) -> None:
        if self.model_default is not None:
            self._set_range(self.number.value())
            self.rejudge()
            self._load_changes()
            self._load_known()

    # ---- moving the threshold --------------------------------------------------------------
    def _slider_moved(self, v: int) -> None:
        if not self._syncing:
            self.number.setValue(v / SLIDER_STEPS * self.max_value)

    def _number_changed(self, value: float) -> None:
        if value > self.max_value:
            self.max_value = value * 1.2
        self._syncing = True
        self.slider.setValue(int(round(value / self.max_value * SLIDER_STEPS)))
        self.line.blockSignals(True)
        self.line.setValue(value)
        self.line.blockSignals(False)
        self._syncing = False
        self.rejudge()

    def _review_toggled(self, on: bool) -> None:
        self.review.setEnabled(on)
        self.rejudge()

    @property
    def review_level(self) -> float | None:
        return self.review.value() if self.review_on.isChecked() else None

    def rejudge(self) -> None:
        """Re-judge the recent live frames and the held-out good parts at the levels shown."""
        if self._syncing:
            return
        t, r = self.number.value(), self.review_level
        if r is not None and r >= t:
            self.rejudged.setText("The REVIEW level must be below the fail threshold.")
            return
        live = np.fromiter(self.live.recent_scores, dtype=np.float64)
        defects = self._defect_scores()
        edges = score_edges(self._good_scores(), np.concatenate([live, defects]), extra=(t, r),
                            bins=40)
        good = self._good_scores()          # held-out, and the log's good parts for this model
        for bars, data in ((self.good_bars, good), (self.live_bars, live),
                           (self.defect_bars, defects)):
            h = histogram(data, edges) / max(len(data), 1)
            bars.setData(edges, h)
        self.defect_bars.setVisible(bool(defects.size))
        self.rates_line.setValue(t)
        if not self._is_proposed(t):
            self.known_text.setText(self._known_sentence(t))
        self.review_line.setVisible(r is not None)
        if r is not None:
            self.review_line.setValue(r)
        if len(self.holdout):
            frr = float(np.mean(self.holdout >= t))
            k = int(np.sum(self.holdout >= t))
            extra = ""
            if r is not None:
                extra = f"; {int(np.sum((self.holdout >= r) & (self.holdout < t)))} would go to REVIEW"
            self.expect.setText(f"Expected false rejects on good parts: {100 * frr:.1f} % "
                                f"({k} of {len(self.holdout)} held-out good parts){extra}.")
        decisions = [decide(s, t, r) for s in live]
        n_fail = sum(d == Decision.FAIL for d in decisions)
        n_rev = sum(d == Decision.REVIEW for d in decisions)
        self.rejudged.setText(
            f"Last {len(live)} live parts at this setting: {n_fail} FAIL, {n_rev} REVIEW, "
            f"{len(live) - n_fail - n_rev} PASS." if len(live) else "No live parts scored yet.")
        self.recent_decisions = decisions

    # ---- applying ----------------------------------------------------------------------------
    def _to_default(self) -> None:
        if self.model_default is not None:
            self.number.setValue(self.model_default)

    def apply(self) -> None:
        """Make the shown levels live, save them with the product, log who and when."""
        t, r = float(self.number.value()), self.review_level
        s = self.services.settings
        old = s.product.threshold if s.product.threshold is not None else self.model_default
        try:
            self.services.save(s.with_product(s.current_product,
                                              replace(s.product, threshold=t, review_below=r)))
        except Exception as exc:  # noqa: BLE001 - invalid combination: say so
            self.services.errors.report("Threshold", exc)
            return
        self.live.set_thresholds(t, r)          # the line has them from services.save
        lg, who = self.services.log, s.operator_name()
        info = self.services.model_info
        product, model_id = s.current_product, info.model_id if info is not None else ""
        reason = f"review band from {r:.4f}" if r is not None else "no review band"
        p = self.proposal
        if self._is_proposed(t):
            reason += (f"; proposed from {p.n_defects} confirmed defects and {p.n_good} good "
                       f"parts for {100 * p.target_frr:.1f} % false rejects")
        if lg is None:
            self.services.errors.report("Threshold", "Applied, but the change could not be "
                                                     "logged: the inspection log is not open.")
            return
        self.services.tasks.call(
            "Logging the threshold change",
            lambda: lg.record_threshold_change(product, old, t, who, model_id=model_id, reason=reason),
            on_done=lambda _id: self._load_changes())
        self.window().statusBar().showMessage(f"Threshold {t:.4f} applied by {who}.", 5000)

    def _load_changes(self) -> None:
        lg = self.services.log
        if lg is None:
            return
        product = self.services.settings.current_product
        self.services.tasks.call("Reading threshold changes",
                                 lambda: lg.threshold_changes(product, limit=50),
                                 on_done=self._show_changes)

    def _show_changes(self, changes) -> None:
        self.changes.setRowCount(len(changes))
        for i, c in enumerate(changes):
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(c.t_us / 1e6))
            old = "—" if c.old_threshold is None else f"{c.old_threshold:.4f}"
            for j, text in enumerate((when, c.who, old, f"{c.new_threshold:.4f}")):
                self.changes.setItem(i, j, QTableWidgetItem(text))
