"""History screen: the inspection log as a table with thumbnails, filters, sorting and keyset
paging (fast on a million rows: each page is an index walk in engine/log), a zoomable
detail pane, marking as confirmed defect / false reject, and export of the current filter.

Every query, picture read and export runs on a worker through the task bridge."""
from __future__ import annotations

import time
from datetime import datetime

import cv2
import numpy as np
from PySide6.QtCore import QAbstractTableModel, QModelIndex, Qt, QTimer
from PySide6.QtGui import QColor, QPixmap
from PySide6.QtWidgets import (QCheckBox, QComboBox, QDoubleSpinBox, QFileDialog, QHBoxLayout,
                               QHeaderView, QLabel, QLineEdit, QPushButton, QSplitter,
                               QTableView, QVBoxLayout, QWidget)

from app.widgets import LABEL_WORDS, ZoomView, label_button_text, label_words, to_pixmap
from engine.errors import InspectError

PAGE = 50
AUTO_REFRESH_MS = 1000            # how soon a new FAIL appears on the first page
THUMB = 56
TIME_RANGES = (("last hour", 3600), ("last 8 hours", 8 * 3600), ("last 24 hours", 86400),
               ("last 7 days", 7 * 86400), ("all time", None))
VERDICTS = (("FAIL and REVIEW", ("FAIL", "REVIEW")), ("FAIL", ("FAIL",)), ("REVIEW", ("REVIEW",)),
            ("PASS", ("PASS",)), ("all verdicts", ()))
LABELS = (("any label", ()), ("not labelled", ("unlabeled",)),
          *((words, (value,)) for value, words in LABEL_WORDS.items()))
SORTS = (("newest first", "time", True), ("oldest first", "time", False),
         ("highest score", "score", True), ("lowest score", "score", False))
COLUMNS = ("", "time (local)", "product", "score", "verdict", "label")
VERDICT_COLOURS = {"FAIL": QColor("#f8d0d0"), "REVIEW": QColor("#fde9b0"), "PASS": QColor("#d5efd9")}


def read_thumb(path) -> np.ndarray | None:
    """Small RGB picture for the table, read on a worker (reduced decode for JPEGs)."""
    if path is None:
        return None
    flag = cv2.IMREAD_REDUCED_COLOR_4 if str(path).endswith(".jpg") else cv2.IMREAD_COLOR
    im = cv2.imread(str(path), flag)
    if im is None:
        return None
    s = THUMB / max(im.shape[:2])
    im = cv2.resize(im, (max(1, int(im.shape[1] * s)), max(1, int(im.shape[0] * s))),
                    interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(im[:, :, ::-1])


def read_rgb(path) -> np.ndarray | None:
    if path is None:
        return None
    im = cv2.imread(str(path), cv2.IMREAD_COLOR)
    return None if im is None else np.ascontiguousarray(im[:, :, ::-1])


class RowsModel(QAbstractTableModel):
    """One page of InspectionRows (plain frozen values) plus their thumbnails."""

    def __init__(self):
        super().__init__()
        self.rows: list = []
        self.thumbs: dict[int, QPixmap] = {}

    def set_page(self, rows, thumbs: dict[int, np.ndarray]) -> None:
        self.beginResetModel()
        self.rows = list(rows)
        self.thumbs = {k: to_pixmap(v) for k, v in thumbs.items() if v is not None}
        self.endResetModel()

    def replace_row(self, row) -> None:
        for i, r in enumerate(self.rows):
            if r.id == row.id:
                self.rows[i] = row
                self.dataChanged.emit(self.index(i, 0), self.index(i, len(COLUMNS) - 1))

    def rowCount(self, parent=QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent=QModelIndex()) -> int:
        return len(COLUMNS)

    def headerData(self, section, orientation, role=Qt.DisplayRole):
        if role == Qt.DisplayRole and orientation == Qt.Horizontal:
            return COLUMNS[section]
        return None

    def data(self, index, role=Qt.DisplayRole):
        r = self.rows[index.row()]
        col = index.column()
        if role == Qt.DecorationRole and col == 0:
            return self.thumbs.get(r.id)
        if role == Qt.BackgroundRole and col == 4:
            return VERDICT_COLOURS.get(r.verdict.value)
        if role != Qt.DisplayRole:
            return None
        if col == 1:
            return datetime.fromtimestamp(r.t_us / 1e6).strftime("%Y-%m-%d %H:%M:%S")
        if col == 2:
            return r.product
        if col == 3:                       # a NaN score is stored as +inf (see engine/log)
            return f"{r.score:.4f}" + (" !" if r.reason else "")
        if col == 4:
            return r.verdict.value
        if col == 5:
            return label_words(r.label) + (f" — {r.note}" if r.note else "")
        return None


class HistoryScreen(QWidget):
    def __init__(self, services):
        super().__init__()
        self.services = services
        self.model = RowsModel()
        self.cursor_after = None          # cursor of the current page's start (None: first page)
        self.history: list = []           # cursors of earlier pages, for "previous"
        self.next_cursor = None
        self.page_number = 1
        self.selected = None
        self._request = 0                 # number of the newest page query
        self._build()
        services.log_ready.connect(lambda lg: self.refresh() if lg is not None else None)
        # A new FAIL/REVIEW shows without Refresh: the result relay flags it, a timer
        # reloads the first page on a worker (the GUI thread never waits on the log).
        self._new_defect = False
        services.live_result.connect(self._on_live_result)
        self._auto = QTimer(self)
        self._auto.timeout.connect(self._auto_refresh)
        self._auto.start(AUTO_REFRESH_MS)

    def _build(self) -> None:
        self.time_box = QComboBox()
        self.time_box.addItems([t for t, _ in TIME_RANGES])
        self.time_box.setCurrentIndex(2)
        self.verdict_box = QComboBox()
        self.verdict_box.addItems([t for t, _ in VERDICTS])
        self.label_box = QComboBox()
        self.label_box.addItems([t for t, _ in LABELS])
        self.product_box = QComboBox()
        self.score_min = QDoubleSpinBox()
        self.score_min.setDecimals(3)
        self.score_min.setRange(0, 1000)
        self.score_min.setSpecialValueText("any")
        self.sort_box = QComboBox()
        self.sort_box.addItems([t for t, _, _ in SORTS])
        for w in (self.time_box, self.verdict_box, self.label_box, self.product_box, self.sort_box):
            w.activated.connect(lambda _i: self.refresh())
        self.score_min.editingFinished.connect(self.refresh)
        filters = QHBoxLayout()            # two rows: fits a 1024-pixel-wide screen
        row1, row2 = QHBoxLayout(), QHBoxLayout()
        for row, items in ((row1, (("Time", self.time_box), ("Verdict", self.verdict_box),
                                   ("Label", self.label_box))),
                           (row2, (("Product", self.product_box), ("Score ≥", self.score_min),
                                   ("Sort", self.sort_box)))):
            for text, w in items:
                row.addWidget(QLabel(text))
                row.addWidget(w)
            row.addStretch(1)
        rows = QVBoxLayout()
        rows.addLayout(row1)
        rows.addLayout(row2)
        filters.addLayout(rows, 1)
        refresh = QPushButton("Refresh")
        refresh.setToolTip("A new FAIL or REVIEW appears by itself on the first page")
        refresh.clicked.connect(self.refresh)
        filters.addWidget(refresh)
        self.export_csv_button = QPushButton("Export CSV…")
        self.export_zip_button = QPushButton("Export ZIP…")
        self.export_csv_button.setToolTip("The rows of the current filter")
        self.export_zip_button.setToolTip("The rows of the current filter with their pictures")
        self.export_csv_button.clicked.connect(lambda: self.export("csv"))
        self.export_zip_button.clicked.connect(lambda: self.export("zip"))
        # Beside the filters, not under the table: a narrow table pane never cuts them off.
        for b in (self.export_csv_button, self.export_zip_button):
            b.setMinimumWidth(b.sizeHint().width())
            filters.addWidget(b)

        self.table = QTableView()
        self.table.setModel(self.model)
        self.table.setSelectionBehavior(QTableView.SelectRows)
        self.table.setSelectionMode(QTableView.SingleSelection)
        self.table.verticalHeader().setDefaultSectionSize(THUMB + 4)
        self.table.verticalHeader().hide()
        self.table.setIconSize(QPixmap(THUMB, THUMB).size())
        hh = self.table.horizontalHeader()
        hh.setSectionResizeMode(QHeaderView.ResizeToContents)
        hh.setStretchLastSection(True)
        self.table.selectionModel().selectionChanged.connect(lambda *_: self._row_selected())

        self.prev_button = QPushButton("◀ Newer")
        self.next_button = QPushButton("Older ▶")
        self.prev_button.clicked.connect(self.previous_page)
        self.next_button.clicked.connect(self.next_page)
        self.count_label = QLabel("")
        pager = QHBoxLayout()
        for w in (self.prev_button, self.next_button, self.count_label):
            pager.addWidget(w)
        pager.addStretch(1)

        left = QWidget()
        lv = QVBoxLayout(left)
        lv.setContentsMargins(0, 0, 0, 0)
        lv.addWidget(self.table, 1)
        lv.addLayout(pager)

        self.detail_title = QLabel("Select a row")
        self.detail_title.setWordWrap(True)
        self.detail_title.setStyleSheet("font-size:15px;")
        self.zoom = ZoomView()
        self.show_overlay = QCheckBox("Show anomaly map")
        self.show_overlay.setChecked(True)
        self.show_overlay.toggled.connect(lambda _c: self._load_detail_picture())
        self.note = QLineEdit()
        self.note.setPlaceholderText("note (optional)")
        self.mark_defect = QPushButton(label_button_text("confirmed_defect"))
        self.mark_false = QPushButton(label_button_text("false_reject"))
        self.mark_defect.setToolTip("Mark the selected part as confirmed defect")
        self.mark_false.setToolTip("Mark the selected part as false reject")
        self.mark_clear = QPushButton("Clear label")
        self.mark_defect.clicked.connect(lambda: self.mark_selected("confirmed_defect"))
        self.mark_false.clicked.connect(lambda: self.mark_selected("false_reject"))
        self.mark_clear.clicked.connect(lambda: self.mark_selected(None))
        marks = QHBoxLayout()
        for w in (self.mark_defect, self.mark_false, self.mark_clear):
            marks.addWidget(w)
        right = QWidget()
        rv = QVBoxLayout(right)
        rv.setContentsMargins(0, 0, 0, 0)
        rv.addWidget(self.detail_title)
        rv.addWidget(self.zoom, 1)
        rv.addWidget(QLabel("Wheel: zoom · drag: pan · double-click: fit"))
        rv.addWidget(self.show_overlay)
        rv.addWidget(self.note)
        rv.addLayout(marks)

        self.splitter = QSplitter(Qt.Horizontal)
        self.splitter.addWidget(left)
        self.splitter.addWidget(right)
        self.splitter.setStretchFactor(0, 3)
        self.splitter.setStretchFactor(1, 2)
        lay = QVBoxLayout(self)
        lay.addLayout(filters)
        lay.addWidget(self.splitter, 1)
        self._enable_marks()

    # ---- filter -> page ----------------------------------------------------------------
    def current_filter(self):
        from engine.log import InspectionFilter
        seconds = TIME_RANGES[self.time_box.currentIndex()][1]
        product = self.product_box.currentText()
        return InspectionFilter(
            start=time.time() - seconds if seconds else None,
            verdicts=VERDICTS[self.verdict_box.currentIndex()][1],
            labels=LABELS[self.label_box.currentIndex()][1],
            products=(product,) if product and product != "all products" else (),
            score_min=self.score_min.value() or None)

    def _sort(self):
        _, key, desc = SORTS[self.sort_box.currentIndex()]
        return key, desc

    def on_shown(self) -> None:
        current = self.product_box.currentText()
        self.product_box.clear()
        self.product_box.addItems(["all products"] + sorted(self.services.settings.products))
        self.product_box.setCurrentText(current or "all products")
        self.refresh()

    def refresh(self) -> None:
        """Back to the first page of the current filter."""
        self.cursor_after, self.history, self.page_number = None, [], 1
        self._load_page()

    def _on_live_result(self, r) -> None:
        if r.verdict is not None and r.logged and r.verdict.decision.value != "PASS":
            self._new_defect = True

    def _auto_refresh(self) -> None:
        """On the first page only: someone reading older pages is not moved."""
        if self._new_defect and self.isVisible() and self.cursor_after is None:
            self._new_defect = False
            self._load_page(flush=True)

    def next_page(self) -> None:
        if self.next_cursor is not None:
            self.history.append(self.cursor_after)
            self.cursor_after = self.next_cursor
            self.page_number += 1
            self._load_page()

    def previous_page(self) -> None:
        if self.history:
            self.cursor_after = self.history.pop()
            self.page_number -= 1
            self._load_page()

    def _load_page(self, flush: bool = False) -> None:
        lg = self.services.log
        if lg is None:
            self.count_label.setText("The inspection log is not open.")
            return
        from engine.log import SortKey
        flt, (key, desc), after = self.current_filter(), self._sort(), self.cursor_after

        def query():
            if flush and lg.writer is not None:     # the new verdict committed first
                lg.writer.flush(timeout=2)
            page = lg.page(flt, sort=SortKey(key), descending=desc, after=after, limit=PAGE)
            thumbs = {r.id: read_thumb(r.overlay_path or r.image_path) for r in page.rows}
            return request, page, thumbs, lg.count(flt)

        # Queries run on the pool and may finish out of order: only the newest is shown.
        self._request += 1
        request = self._request
        self.services.tasks.call("Reading the history", query, on_done=self._show_page)

    def _show_page(self, result) -> None:
        request, page, thumbs, total = result
        if request != self._request:
            return
        selected_id = self.selected.id if self.selected else None
        self.model.set_page(page.rows, thumbs)
        self.next_cursor = page.next
        self.prev_button.setEnabled(bool(self.history))
        self.next_button.setEnabled(page.next is not None)
        first = (self.page_number - 1) * PAGE
        self.count_label.setText(f"{first + 1 if page.rows else 0}–{first + len(page.rows)} of {total:,}")
        for i, r in enumerate(page.rows):
            if r.id == selected_id:
                self.table.selectRow(i)
                break
        else:
            self.selected = None
            self._enable_marks()

    # ---- detail ----------------------------------------------------------------------------
    def _row_selected(self) -> None:
        rows = self.table.selectionModel().selectedRows()
        self.selected = self.model.rows[rows[0].row()] if rows else None
        self._enable_marks()
        r = self.selected
        if r is None:
            self.detail_title.setText("Select a row")
            self.zoom.set_rgb(None)
            return
        when = datetime.fromtimestamp(r.t_us / 1e6).strftime("%Y-%m-%d %H:%M:%S")
        label = label_words(r.label) or "not labelled"
        by = f" by {r.labeled_by}" if r.labeled_by else ""
        self.detail_title.setText(f"<b>{r.verdict.value}</b> score {r.score:.4f} (threshold "
                                  f"{r.threshold:.4f}) · {r.product} · {when} · {r.camera} · "
                                  f"{label}{by}"
                                  + (f"<br><b>Why:</b> {r.reason}" if r.reason else ""))
        self.note.setText(r.note or "")
        self._load_detail_picture()

    def _load_detail_picture(self) -> None:
        r = self.selected
        if r is None:
            return
        path = r.overlay_path if self.show_overlay.isChecked() and r.overlay_path else r.image_path
        if path is None:
            self.zoom.set_rgb(None)
            state = r.picture_state.value if r.picture_state else "none"
            self.detail_title.setText(self.detail_title.text() + f"<br>No picture ({state}).")
            return
        rid = r.id

        def shown(rgb) -> None:
            if self.selected is not None and self.selected.id == rid:
                self.zoom.set_rgb(rgb)

        self.services.tasks.call("Reading a picture", lambda: read_rgb(path), on_done=shown)

    def _enable_marks(self) -> None:
        on = self.selected is not None
        for b in (self.mark_defect, self.mark_false, self.mark_clear):
            b.setEnabled(on)

    def mark_selected(self, label: str | None) -> None:
        lg, r = self.services.log, self.selected
        if lg is None or r is None:
            self.services.errors.report("Marking", "Select a row in the history first.", serious=False)
            return
        note = self.note.text().strip() or None

        def work():
            if not self.services.set_label(r.id, label, note):    # role check + audit
                raise InspectError(f"Inspection {r.id} is no longer in the log.")
            return lg.get(r.id)

        def done(row) -> None:
            self.model.replace_row(row)
            if self.selected is not None and self.selected.id == row.id:
                self.selected = row
                self._row_selected()

        self.services.tasks.call("Marking", work, on_done=done)

    # ---- export ------------------------------------------------------------------------------
    def export(self, kind: str) -> None:
        lg = self.services.log
        if lg is None:
            return
        default = str(self.services.storage_dir / f"inspections.{kind}")
        dest, _ = QFileDialog.getSaveFileName(self, "Export the current filter", default,
                                              "CSV (*.csv)" if kind == "csv" else "ZIP (*.zip)")
        if dest:
            self.export_to(kind, dest)

    def export_to(self, kind: str, dest: str) -> None:
        from pathlib import Path
        lg, flt = self.services.log, self.current_filter()

        def work():
            if kind == "csv":
                return f"{lg.export_csv(flt, Path(dest)):,} rows exported to {dest}."
            rows, pics, _ = lg.export_zip(flt, Path(dest))
            return f"{rows:,} rows and {pics:,} pictures exported to {dest}."

        self.services.tasks.call("Exporting", work,
                                 on_done=lambda msg: self.window().statusBar().showMessage(msg, 10000))

    # ---- remembered layout ---------------------------------------------------------------
    def save_layout(self, q) -> None:
        q.setValue("history/splitter", self.splitter.saveState())
        q.setValue("history/time", self.time_box.currentIndex())
        q.setValue("history/verdict", self.verdict_box.currentIndex())

    def restore_layout(self, q) -> None:
        if q.value("history/splitter") is not None:
            self.splitter.restoreState(q.value("history/splitter"))
        self.time_box.setCurrentIndex(int(q.value("history/time", 2)))
        self.verdict_box.setCurrentIndex(int(q.value("history/verdict", 0)))
