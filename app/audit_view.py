"""Audit screen: the audit trail (who changed what, when, old -> new) to browse and export.
Read-only by design: the trail is append-only and nothing here edits or deletes a row.
Queries run on a worker. Also `python main.py audit` (audit_main below)."""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QDate
from PySide6.QtWidgets import (QComboBox, QDateEdit, QFileDialog, QHBoxLayout, QHeaderView,
                               QLabel, QLineEdit, QPushButton, QTableWidget, QTableWidgetItem,
                               QVBoxLayout, QWidget)

from engine.audit import COLUMNS, KINDS, row_values, write_csv

LIMIT = 5000                     # rows shown; the export takes every row of the filter


class AuditScreen(QWidget):
    def __init__(self, services):
        super().__init__()
        self.services = services
        self.rows: list = []
        self._request = 0
        self.since = QDateEdit(QDate.currentDate().addDays(-7))
        self.since.setCalendarPopup(True)
        self.since.setDisplayFormat("yyyy-MM-dd")
        self.kind = QComboBox()
        self.kind.addItems(["all kinds", *KINDS])
        self.who = QLineEdit()
        self.who.setPlaceholderText("anyone")
        self.refresh_button = QPushButton("Refresh")
        self.refresh_button.clicked.connect(self.refresh)
        self.export_button = QPushButton("Export CSV…")
        self.export_button.setMinimumWidth(self.export_button.sizeHint().width())
        self.export_button.clicked.connect(self.export)
        self.kind.activated.connect(lambda _i: self.refresh())
        self.since.dateChanged.connect(lambda _d: self.refresh())
        self.who.editingFinished.connect(self.refresh)
        top = QHBoxLayout()
        for text, w in (("From (UTC day)", self.since), ("Kind", self.kind), ("Who", self.who)):
            top.addWidget(QLabel(text))
            top.addWidget(w)
        top.addStretch(1)
        top.addWidget(self.refresh_button)
        top.addWidget(self.export_button)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.setEditTriggers(QTableWidget.NoEditTriggers)      # append-only: no edits
        self.table.setSelectionBehavior(QTableWidget.SelectRows)
        self.table.verticalHeader().hide()
        hh = self.table.horizontalHeader()
        hh.setSectionResizeMode(QHeaderView.Interactive)
        hh.setStretchLastSection(True)
        self.count = QLabel("")
        lay = QVBoxLayout(self)
        lay.addLayout(top)
        lay.addWidget(self.table, 1)
        lay.addWidget(self.count)
        services.log_ready.connect(lambda lg: self.refresh() if lg is not None else None)

    def _filter(self) -> dict:
        d = self.since.date()
        from engine.audit import parse_day
        return {"since_us": parse_day(f"{d.year():04d}-{d.month():02d}-{d.day():02d}"),
                "kind": None if self.kind.currentIndex() == 0 else self.kind.currentText(),
                "who": self.who.text().strip() or None}

    def on_shown(self) -> None:
        self.refresh()

    def refresh(self) -> None:
        lg = self.services.log
        if lg is None:
            self.count.setText("The inspection log is not open.")
            return
        flt = self._filter()
        self._request += 1
        request = self._request

        def query():
            if lg.writer is not None:
                lg.writer.flush(timeout=2)           # rows appended a moment ago
            return request, lg.audit(limit=LIMIT, **flt)

        self.services.tasks.call("Reading the audit trail", query, on_done=self._show)

    def _show(self, result) -> None:
        request, rows = result
        if request != self._request:
            return
        rows = list(reversed(rows))                   # newest first on screen
        self.rows = rows
        self.table.setRowCount(len(rows))
        for i, e in enumerate(rows):
            for j, text in enumerate(row_values(e)):
                self.table.setItem(i, j, QTableWidgetItem(text))
        self.table.resizeColumnsToContents()
        more = " (the newest first; export for all)" if len(rows) >= LIMIT else ""
        self.count.setText(f"{len(rows):,} changes{more}. The audit trail is append-only: "
                           "nothing here can be edited or deleted.")

    def export(self) -> None:
        default = str(self.services.storage_dir / "audit.csv")
        dest, _ = QFileDialog.getSaveFileName(self, "Export the audit trail", default, "CSV (*.csv)")
        if dest:
            self.export_to(dest)

    def export_to(self, dest: str) -> None:
        lg, flt = self.services.log, self._filter()
        if lg is None:
            return

        def work():
            with open(dest, "w", newline="", encoding="utf-8") as f:
                n = write_csv(lg.audit(limit=None, **flt), f)
            return f"{n:,} audit rows exported to {dest}."

        self.services.tasks.call("Exporting the audit trail", work,
                                 on_done=lambda msg: self.window().statusBar().showMessage(msg, 10000))


def audit_main(argv: list[str]) -> int:
    """`python main.py audit --since 2026-12-01 [--until DAY] [--kind K] [--who NAME] [--csv]`"""
    import argparse
    from app.main import default_data_dir
    from engine.audit import parse_day, print_audit
    from engine.errors import InspectError, run_command
    p = argparse.ArgumentParser(prog="python main.py audit",
                                description="Print the audit trail (who changed what, when, "
                                            "old → new), oldest first.")
    p.add_argument("--since", required=True, help="from this UTC day or time (YYYY-MM-DD[THH:MM])")
    p.add_argument("--until", help="up to (not including) this UTC day or time")
    p.add_argument("--kind", choices=KINDS)
    p.add_argument("--who", help="only this person's changes")
    p.add_argument("--csv", action="store_true", help="CSV on standard output")
    p.add_argument("--data-dir", type=Path, default=None,
                   help=f"the app's data folder (default {default_data_dir()}); its settings say where the log is")
    p.add_argument("--log", default=None, help="the log's folder or database URL (instead of the data folder's)")
    args = p.parse_args(argv)

    def run() -> int:
        since = parse_day(args.since)
        until = parse_day(args.until) if args.until else None
        where = args.log or _log_location(args.data_dir or default_data_dir())
        if "://" not in str(where) and not Path(where).exists():     # never create one here
            raise InspectError(f"There is no inspection log at {where}: give the app's "
                               "--data-dir, or --log with the log's folder or database URL.")
        print_audit(where, since, until, kind=args.kind, who=args.who, as_csv=args.csv)
        return 0
    return run_command(run)


def _log_location(data_dir: Path):
    """Where the app's log is, as Services.log_location says it (settings' storage)."""
    from engine.settings import load_settings
    s = load_settings(Path(data_dir) / "settings.json")
    folder = Path(s.storage.folder) if s.storage.folder else Path(data_dir)
    return s.storage.database_url or folder / "log"

