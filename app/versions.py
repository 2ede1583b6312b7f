"""Model versions screen and the Relearn window.

Versions: every trained model of the product (engine/versions.py, the log's models table)
with who trained it, when, from what, and how its held-out good parts scored; select one
to compare it with the one in use; Activate or Roll back. Activation is a settings change
through `Services.save` (role check, audit row, `Pipeline.set_model` between frames), the
same path Learn's Save takes. History's rows name their model version: the link under the
History picture opens it here.

Relearn (the button on Learn): the product's good set plus every marked false reject trains
a new version on a worker while the line keeps judging with the current one; both are then
shown side by side on the labelled parts; Accept makes the new one the product's model,
Discard deletes it.
"""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (QComboBox, QDialog, QHBoxLayout, QHeaderView, QLabel, QProgressBar,
                               QPushButton, QSplitter, QTableWidget, QTableWidgetItem,
                               QVBoxLayout, QWidget)

from app.learn import safe_file_name
from engine import versions as ver
from engine.errors import InspectError

COLUMNS = ("version", "trained", "trained by", "learned from", "steps", "threshold",
           "held-out false rejects", "false rejects learned", "")


def who(services) -> str:
    access = getattr(services, "access", None)
    return access.actor.name if access is not None else services.settings.operator_name()


def _item(text: str, tip: str = "") -> QTableWidgetItem:
    it = QTableWidgetItem(text)
    if tip:
        it.setToolTip(tip)
    return it


def active_version(services, log, product: str) -> ver.ModelVersion | None:
    """The product's model in use as a version; a model file not registered yet (trained
    on the command line, or before versions existed) is registered now. On a worker."""
    p = services.settings.products.get(product)
    if p is None or not p.model_file:
        return None
    found = ver.active_of(ver.versions_of(log, product), p.model_file)
    if found is None and Path(p.model_file).is_file():
        try:
            found = ver.register_file(log, p.model_file, product, trained_by="")
        except InspectError:          # a log opened read-only, or a file it cannot read:
            return None               # listed as not registered, said on the screen
    return found


class VersionsScreen(QWidget):
    activated = Signal(str)                 # model id now in use

    def __init__(self, services):
        super().__init__()
        self.services = services
        self.versions: list[ver.ModelVersion] = []
        self.active: ver.ModelVersion | None = None
        self._want: str | None = None        # a model id to select once loaded
        self._request = 0                    # number of the newest list query
        self._build()
        services.log_ready.connect(lambda lg: self.load() if lg is not None else None)
        services.settings_changed.connect(self._settings_changed)

    def _build(self) -> None:
        self.product = QComboBox()
        self.product.setMinimumWidth(180)
        self.product.activated.connect(lambda _i: self.load())
        self.head = QLabel("")
        self.head.setWordWrap(True)
        self.head.setStyleSheet("font-size:15px;")
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setEditTriggers(QTableWidget.NoEditTriggers)
        self.table.setSelectionBehavior(QTableWidget.SelectRows)
        self.table.setSelectionMode(QTableWidget.SingleSelection)
        self.table.verticalHeader().hide()
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.itemSelectionChanged.connect(self._selected)
        self.compare = QTableWidget(0, 3)
        self.compare.setHorizontalHeaderLabels(["", "selected", "in use"])
        self.compare.setEditTriggers(QTableWidget.NoEditTriggers)
        self.compare.verticalHeader().hide()
        self.compare.verticalHeader().setDefaultSectionSize(24)
        self.compare.horizontalHeader().setStretchLastSection(True)
        self.compare.setColumnWidth(0, 170)
        self.compare.setColumnWidth(1, 330)
        self.activate_button = QPushButton("Activate selected")
        self.activate_button.clicked.connect(self.activate_selected)
        self.rollback_button = QPushButton("Roll back to previous")
        self.rollback_button.clicked.connect(self.roll_back)
        self.refresh_button = QPushButton("Refresh")
        self.refresh_button.clicked.connect(self.load)
        top = QHBoxLayout()
        top.addWidget(QLabel("Product:"))
        top.addWidget(self.product)
        top.addWidget(self.head, 1)
        top.addWidget(self.refresh_button)
        buttons = QHBoxLayout()
        buttons.addWidget(self.activate_button)
        buttons.addWidget(self.rollback_button)
        buttons.addStretch(1)
        split = QSplitter(Qt.Vertical)
        split.addWidget(self.table)
        split.addWidget(self.compare)
        split.setStretchFactor(0, 2)
        split.setStretchFactor(1, 3)
        lay = QVBoxLayout(self)
        lay.addLayout(top)
        lay.addWidget(split, 1)
        lay.addLayout(buttons)
        self._refresh_products()
        self._update_buttons()

    def _refresh_products(self) -> None:
        s = self.services.settings
        keep = self.product.currentText() or s.current_product
        self.product.blockSignals(True)
        self.product.clear()
        self.product.addItems(sorted(s.products))
        self.product.setCurrentText(keep if keep in s.products else s.current_product)
        self.product.blockSignals(False)

    def _settings_changed(self, _settings) -> None:
        """A model may have changed (here, by Learn, by a relearn, by a rollback): list anew."""
        self._refresh_products()
        if self.services.log is not None:
            self.load()

    def on_shown(self) -> None:
        self._refresh_products()
        self.load()

    # ---- reading -----------------------------------------------------------------------
    def load(self) -> None:
        lg, product = self.services.log, self.product.currentText()
        if lg is None:
            self.head.setText("The inspection log is not open: versions are kept there.")
            return

        self._request += 1
        request = self._request

        def query():
            active = active_version(self.services, lg, product)
            return request, ver.versions_of(lg, product), active

        self.services.tasks.call("Reading model versions", query, on_done=self._show)

    def _show(self, result) -> None:
        request, found, active = result
        if request != self._request:          # an older query answering late: not the latest
            return
        self.versions, self.active = found, active
        self.head.setText(ver.describe(self.versions, self.active))
        self.table.setRowCount(len(self.versions))
        for i, v in enumerate(self.versions):
            in_use = self.active is not None and v.model_id == self.active.model_id
            frr = "—" if v.holdout_frr is None else f"{100 * v.holdout_frr:.1f} %"
            state = "IN USE" if in_use else ("" if v.file_exists else "file missing")
            cells = (v.model_id, v.created_text, v.trained_by or "—", v.training_set or "—",
                     f"{v.steps:,}", f"{v.threshold:.4f}", frr, str(len(v.labels_used)), state)
            for j, text in enumerate(cells):
                self.table.setItem(i, j, _item(text, v.path if j == 0 else ""))
            if in_use:
                for j in range(len(cells)):
                    self.table.item(i, j).setBackground(QColor("#c8e6c9"))
        want = self._want or (self.active.model_id if self.active else None)
        self._want = None
        self.select(want)
        self._selected()          # the same row selected again sends no signal: compare anew

    def select(self, model_id: str | None) -> bool:
        for i, v in enumerate(self.versions):
            if v.model_id == model_id:
                self.table.selectRow(i)
                return True
        return False

    def show_model(self, model_id: str) -> None:
        """Open the version that judged a History row (its product's list, that row)."""
        lg = self.services.log
        if lg is None or not model_id:
            return

        def find():
            return lg.model(model_id)

        def found(info) -> None:
            if info is None:
                self.head.setText(f"Model {model_id} is not registered as a version (it was "
                                  "used before versions were kept, or its file was removed).")
                return
            self.product.setCurrentText(info.product)
            self._want = model_id
            self.load()

        self.services.tasks.call("Finding a model version", find, on_done=found)

    @property
    def selected(self) -> ver.ModelVersion | None:
        rows = self.table.selectionModel().selectedRows()
        return self.versions[rows[0].row()] if rows else None

    def _selected(self) -> None:
        v = self.selected
        base = self.active or v
        rows = ver.compare(v, base) if v is not None and base is not None else []
        self.compare.setRowCount(len(rows))
        for i, (what, a, b) in enumerate(rows):
            for j, text in enumerate((what, a, b)):
                item = _item(text)
                if j and a != b and what not in ("version", "file", "trained"):
                    item.setForeground(Qt.darkBlue)
                self.compare.setItem(i, j, item)
        self._update_buttons()

    def _update_buttons(self) -> None:
        v = self.selected
        self.activate_button.setEnabled(
            v is not None and v.file_exists and (self.active is None or v.model_id != self.active.model_id))
        self.rollback_button.setEnabled(ver.previous_of(self.versions, self.active) is not None
                                        and self.active is not None)

    # ---- changing --------------------------------------------------------------------------
    def activate_selected(self) -> None:
        if self.selected is not None:
            self.activate(self.selected, "activated")

    def roll_back(self) -> None:
        back = ver.previous_of(self.versions, self.active)
        if back is None:
            self.services.errors.report("Model versions", "There is no earlier version with its "
                                        "model file to roll back to.")
            return
        self.activate(back, "rolled back")

    def activate(self, version: ver.ModelVersion, how: str) -> None:
        """The version's last applied threshold (read on a worker), then the settings
        change on the GUI thread: Services.save checks the role, records the audit row
        and swaps the model between frames."""
        lg = self.services.log
        if lg is None:
            return
        was = self.active.model_id if self.active else "none"

        def done(threshold) -> None:
            try:
                new = ver.activation(self.services.settings, version, threshold)
                self.services.save(new, detail=f"{how} to version {version.model_id} (was {was})")
            except InspectError as exc:
                self.services.errors.report("Model versions", exc)
                return
            self.window().statusBar().showMessage(
                f"{version.product}: version {version.model_id} {how} (was {was}).", 8000)
            self.activated.emit(version.model_id)
            self.load()

        self.services.tasks.call("Reading the version's threshold",
                                 lambda: ver.last_threshold(lg, version.product, version.model_id),
                                 on_done=done)


# ---- relearn --------------------------------------------------------------------------------

class RelearnDialog(QDialog):
    """Relearn from labels, then current and new version side by side; Accept or Discard."""
    accepted_version = Signal(str)

    def __init__(self, services, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Relearn from labels")
        self.resize(900, 600)
        self.services = services
        self.product = services.settings.current_product
        self.job = None
        self.outcome = None
        self.text = QLabel(f"Relearning {self.product}: collecting its good set and the parts "
                           "marked as false rejects …")
        self.text.setWordWrap(True)
        self.text.setStyleSheet("font-size:15px;")
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.table = QTableWidget(0, 5)
        self.table.setHorizontalHeaderLabels(["log row", "label", "current version",
                                              "new version", "as it should be?"])
        self.table.setEditTriggers(QTableWidget.NoEditTriggers)
        self.table.verticalHeader().hide()
        self.table.horizontalHeader().setStretchLastSection(True)
        self.holdout = QLabel("")
        self.holdout.setWordWrap(True)
        self.accept_button = QPushButton("Accept: use the new version")
        self.discard_button = QPushButton("Discard")
        self.cancel_button = QPushButton("Cancel")
        self.accept_button.clicked.connect(self.accept_new)
        self.discard_button.clicked.connect(self.discard_new)
        self.cancel_button.clicked.connect(self.cancel)
        row = QHBoxLayout()
        row.addWidget(self.progress, 1)
        row.addWidget(self.cancel_button)
        row.addWidget(self.discard_button)
        row.addWidget(self.accept_button)
        lay = QVBoxLayout(self)
        lay.addWidget(self.text)
        lay.addWidget(self.table, 1)
        lay.addWidget(self.holdout)
        lay.addLayout(row)
        self._buttons()

    def _buttons(self) -> None:
        running = self.job is not None and self.job.running
        self.cancel_button.setEnabled(running)
        self.accept_button.setEnabled(self.outcome is not None and not running)
        self.discard_button.setEnabled(self.outcome is not None and not running)

    def start(self) -> bool:
        """Check, then train on a worker; False (and one sentence shown) when it cannot."""
        s, lg = self.services.settings, self.services.log
        try:
            if hasattr(self.services, "require"):
                self.services.require("relearn")
            if lg is None:
                raise InspectError("The inspection log is not open: the labels are kept there.")
            if not s.product.model_file:
                raise InspectError(f"{self.product} has no model yet: Learn good parts first.")
        except InspectError as exc:
            self.services.errors.report("Relearn", exc)
            return False
        self.job = self.services.tasks.run("Relearning", self._work(s, lg), on_done=self._done,
                                           on_progress=self._progress, on_failed=self._failed,
                                           on_finished=self._buttons)
        self._buttons()
        return True

    def _work(self, s, lg):
        from engine import relearn
        from engine.model import load_checkpoint
        from engine.train import TrainConfig
        services, product = self.services, self.product
        threshold = services.model_info.threshold if services.model_info is not None else None
        pending = services.models_dir / f"relearn-pending-{safe_file_name(product)}.pt"

        def work(progress, should_stop):            # on a worker: the line keeps judging
            active = active_version(services, lg, product)
            if active is None:
                raise InspectError(f"The model file of {product} cannot be read: Learn good "
                                   "parts again.")
            progress(0.0, "reading the labelled parts and their pictures")
            rs = relearn.collect(lg, product, active)
            problem = rs.problem()
            if problem:
                raise InspectError(problem)
            model, _meta = load_checkpoint(active.path)
            cfg = TrainConfig(model=model.config, steps=s.training_steps, teacher=s.teacher,
                              minutes=s.training_minutes or None, penalty=s.penalty,
                              device=s.device, target_frr=s.product.target_false_reject)
            job = relearn.RelearnJob(cfg, rs, active.path,
                                     threshold if threshold is not None else active.threshold,
                                     str(pending), device="cpu" if s.device == "cpu" else "auto")
            return relearn.run(job, progress, should_stop)
        return work

    def _progress(self, fraction: float, message: str) -> None:
        self.progress.setValue(int(fraction * 1000))
        self.text.setText(f"Relearning {self.product} (the line keeps judging with the current "
                          f"version): {message}")

    def _failed(self, exc) -> None:
        self.text.setText("Relearning cancelled." if self.job and self.job.cancelled
                          else f"Relearning did not finish: {exc}")

    def cancel(self) -> None:
        if self.job is not None:
            self.job.cancel()

    def _done(self, out) -> None:
        self.outcome = out
        self.progress.setValue(1000)
        c, rs = out.compared, out.rs
        gone = (f" {rs.unreadable} labelled parts have no picture in the log (a PASS keeps "
                "its picture only now and then, retention removes old ones) and are left out."
                if rs.unreadable else "")
        self.text.setText(f"Learned from {rs.good_source} and {len(rs.false_rejects)} false "
                          f"rejects ({rs.new_false_rejects} new since the current version). "
                          + c.sentence() + gone)
        self.table.setRowCount(len(c.ids))
        for i, (rid, label) in enumerate(zip(c.ids, c.labels)):
            old, new = float(c.current_scores[i]), float(c.new_scores[i])
            old_fail, new_fail = old >= c.current_threshold, new >= c.new_threshold
            should_fail = label == "confirmed_defect"
            cells = (str(rid), label.replace("_", " "),
                     f"{old:.4f} {'FAIL' if old_fail else 'PASS'}",
                     f"{new:.4f} {'FAIL' if new_fail else 'PASS'}",
                     "yes" if new_fail == should_fail else "NO")
            for j, text in enumerate(cells):
                self.table.setItem(i, j, _item(text))
        frr_old, frr_new = c.holdout_frr(False), c.holdout_frr(True)
        self.holdout.setText(
            f"Thresholds: current {c.current_threshold:.4f}, new {c.new_threshold:.4f} (its own "
            f"default). Held-out good parts: current {len(c.current_holdout)}"
            + ("" if frr_old is None else f" ({100 * frr_old:.0f} % rejected)")
            + f", new {len(c.new_holdout)}" + ("" if frr_new is None else f" ({100 * frr_new:.0f} % rejected)")
            + f"; {out.n_images} training pictures (false rejects repeated).")
        self._buttons()

    def accept_new(self) -> None:
        from engine import relearn
        out, lg, services = self.outcome, self.services.log, self.services
        if out is None or lg is None:
            return
        final = services.models_dir / f"{safe_file_name(self.product)}-{out.meta.model_id}.pt"
        by = who(services)

        def done(version) -> None:
            try:
                services.save(ver.activation(services.settings, version),
                              detail=f"relearned from {len(version.labels_used)} false rejects")
            except InspectError as exc:
                services.errors.report("Relearn", exc)
                return
            self.outcome = None
            self._buttons()
            self.text.setText(f"{self.product} now uses version {version.model_id}.")
            self.accepted_version.emit(version.model_id)
            self.accept()

        self.services.tasks.call("Keeping the new version",
                                 lambda: relearn.accept(lg, out, final, by), on_done=done)

    def discard_new(self) -> None:
        from engine import relearn
        if self.outcome is not None:
            relearn.discard(self.outcome)
            self.outcome = None
        self._buttons()
        self.reject()

    def closeEvent(self, event) -> None:
        if self.job is not None and self.job.running:
            self.job.cancel()
        super().closeEvent(event)


def open_relearn(services, parent=None) -> RelearnDialog | None:
    """The Relearn button: the window shows progress, then the comparison."""
    dialog = RelearnDialog(services, parent)
    if not dialog.start():
        dialog.deleteLater()
        return None
    dialog.setModal(False)
    dialog.show()
    return dialog


# ---- the one hook in the main window --------------------------------------------------------

def install_versions(window) -> VersionsScreen:
    """The Versions tab (after History), History's link to the version that judged a row,
    and the role gate on activation."""
    screen = VersionsScreen(window.services)
    window.versions_screen = screen
    window.tabs.insertTab(window.tabs.indexOf(window.history) + 1, screen, "Versions")
    link = QPushButton("")
    link.setObjectName("model-version-link")
    link.setFlat(True)
    link.setStyleSheet("color:#1565c0; text-decoration: underline; text-align:left;")
    link.setToolTip("Open the model version that judged this part")
    link.hide()
    history = window.history
    history.detail_title.parentWidget().layout().insertWidget(1, link)
    window.version_link = link

    def row_changed(*_):
        r = history.selected
        link.setVisible(r is not None)
        if r is not None:
            link.setText(f"judged by model version {r.model_id} →")

    def open_it():
        r = history.selected
        if r is not None:
            window.tabs.setCurrentWidget(screen)
            screen.show_model(r.model_id)

    history.table.selectionModel().selectionChanged.connect(row_changed)
    link.clicked.connect(open_it)
    controls = getattr(window, "access_controls", None)
    if controls is not None:
        for w in (screen.activate_button, screen.rollback_button):
            controls.gate.add(w, "model")
    return screen
