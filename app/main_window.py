"""The main window: five screens as tabs, a toolbar (start/stop, product), the status bar
where every error ends up in plain words, keyboard shortcuts, and the remembered layout."""
from __future__ import annotations

import logging

from PySide6.QtCore import QSettings, Qt, QTimer, Slot
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (QComboBox, QLabel, QMainWindow, QMessageBox, QTabWidget,
                               QToolBar)

from app.history import HistoryScreen
from app.learn import LearnScreen
from app.live import LiveScreen
from app.services import Services
from app.settings_view import SettingsScreen
from app.threshold import ThresholdScreen

log = logging.getLogger("inspect.app")


class MainWindow(QMainWindow):
    def __init__(self, services: Services):
        super().__init__()
        from app import gc_guard
        gc_guard.install()           # cycles are collected on this thread, never a worker's
        self.services = services
        from engine.version import version_text
        self.setWindowTitle(f"Inspection — {version_text()}")
        self.resize(1280, 800)
        self._closing = False
        self._error_box: QMessageBox | None = None

        self.live = LiveScreen(services)
        self.learn = LearnScreen(services)
        self.threshold = ThresholdScreen(services, self.live)
        self.history = HistoryScreen(services)
        self.settings_screen = SettingsScreen(services)
        self.tabs = QTabWidget()
        self.tabs.setObjectName("screens")
        for w, name in ((self.live, "Live"), (self.learn, "Learn good parts"),
                        (self.threshold, "Threshold"), (self.history, "History"),
                        (self.settings_screen, "Settings")):
            self.tabs.addTab(w, name)
        self.setCentralWidget(self.tabs)
        self.tabs.currentChanged.connect(self._tab_changed)
        self._build_toolbar()
        from app.login import install_access     # roles: login, Audit and Users pages, gate
        self.access_controls = install_access(self)
        from app.versions import install_versions  # model versions tab, History's link to it
        self.versions_screen = install_versions(self)
        self.status_label = QLabel("")
        self.statusBar().addPermanentWidget(self.status_label)

        services.errors.shown.connect(self.show_error)
        services.settings_changed.connect(self._refresh_products)
        services.log_event.connect(self._log_event)
        self.learn.saved.connect(lambda _name: self.tabs.setCurrentWidget(self.live))
        self._restore_layout()
        self._stats_timer = QTimer(self)           # writer counters: cheap reads, no database
        self._stats_timer.timeout.connect(self._show_writer_stats)
        self._stats_timer.start(1000)

    # ---- toolbar and shortcuts ---------------------------------------------------------
    def _build_toolbar(self) -> None:
        tb = QToolBar("Main")
        tb.setObjectName("main-toolbar")
        self.addToolBar(tb)
        self.start_action = QAction("Start", self)
        self.start_action.setShortcut(QKeySequence(Qt.Key_F5))
        self.start_action.setToolTip("Start / stop the live inspection (F5)")
        self.start_action.triggered.connect(self.toggle_live)
        tb.addAction(self.start_action)
        tb.addSeparator()
        tb.addWidget(QLabel(" Product: "))
        self.product_box = QComboBox()
        self.product_box.setMinimumWidth(180)
        self.product_box.setToolTip("Switching products switches models")
        self.product_box.activated.connect(
            lambda i: self._switch_product(self.product_box.itemText(i)))
        tb.addWidget(self.product_box)
        self._refresh_products()
        # Marking works on the History selection, or on the latest defect while on Live.
        from app.widgets import LABEL_KEYS, LABEL_WORDS    # one name per label action
        for label, words in LABEL_WORDS.items():
            key = LABEL_KEYS[label]
            act = QAction(words.capitalize(), self)
            act.setShortcut(QKeySequence(key))
            act.setToolTip(f"Mark as {words} ({key})")
            act.triggered.connect(lambda _=False, lb=label: self.mark(lb))
            tb.addAction(act)
        tb.addSeparator()
        self.about_action = QAction("About", self)
        self.about_action.setToolTip("Version, build and data folder")
        self.about_action.triggered.connect(self.show_about)
        tb.addAction(self.about_action)

    def about_text(self) -> str:
        from engine.version import version_text
        return (f"{version_text()}\n\nData folder (settings, models, log): "
                f"{self.services.data_dir}\nApp log: {self.services.data_dir / 'logs' / 'app.log'}")

    def show_about(self) -> None:
        QMessageBox.about(self, "About the inspection app", self.about_text())

    def _refresh_products(self, *_):
        s = self.services.settings
        self.product_box.blockSignals(True)
        self.product_box.clear()
        self.product_box.addItems(sorted(s.products))
        self.product_box.setCurrentText(s.current_product)
        self.product_box.blockSignals(False)

    def _switch_product(self, name: str) -> None:
        try:
            self.services.switch_product(name)
        except Exception as exc:  # noqa: BLE001
            self.services.errors.report("Product", exc)

    @Slot()
    def toggle_live(self) -> None:
        if self.services.live_requested:
            self.services.stop_live()
        else:
            self.services.start_live()
        self._update_start_action()

    def _update_start_action(self) -> None:
        running = self.services.live_requested
        self.start_action.setText("Stop" if running else "Start")
        self.live.set_running(running)

    def mark(self, label: str) -> None:
        if self.tabs.currentWidget() is self.history:
            self.history.mark_selected(label)
        else:
            self.live.mark_last_defect(label)

    # ---- start-up and closing ----------------------------------------------------------
    def start_up(self, autostart: bool = True) -> None:
        """Show what was wrong with the settings file, open the log (worker), load the
        product's model, start the camera. A step that fails is shown and the rest still
        runs: the window is up, and the operator can fix it from here."""
        if self.services.startup_messages:      # said before this window was listening
            self.show_error("Settings file", "\n".join(self.services.startup_messages), True)
        steps = [self.services.open_log, self.services.load_product_model]
        if autostart:
            steps.append(self.services.start_live)      # begins once the log is open
        for step in steps:
            try:
                step()
            except Exception as exc:  # noqa: BLE001 - shown and logged; the app stays up
                self.services.errors.report("Start-up", exc)
        self._update_start_action()

    def closeEvent(self, event) -> None:
        if not self._closing:
            self._closing = True
            self._save_layout()
            self.statusBar().showMessage("Stopping: finishing the log …")
            self.learn.shutdown()
            self.services.shutdown()
            self._stats_timer.stop()
        event.accept()

    # ---- errors and status --------------------------------------------------------------
    @Slot(str, str, bool)
    def show_error(self, where: str, message: str, serious: bool) -> None:
        text = f"{where}: {message}"
        self.statusBar().showMessage(text, 15000 if serious else 8000)
        self.statusBar().setStyleSheet("color: #b00020;" if serious else "")
        if serious and not self._closing and self.isVisible():
            # One reused, non-modal box: never blocks the line, never piles up.
            if self._error_box is None:
                self._error_box = QMessageBox(QMessageBox.Warning, "Problem", "", QMessageBox.Ok, self)
                self._error_box.setModal(False)
            self._error_box.setText(text)
            self._error_box.show()

    def _log_event(self, event) -> None:
        if event.level in ("warning", "error"):
            self.show_error("Inspection log", event.message, event.level == "error")

    def _show_writer_stats(self) -> None:
        self._update_start_action()
        lg = self.services.log
        if lg is None or lg.writer is None:
            self.status_label.setText("log: not open")
            return
        st = lg.writer.stats()
        self.status_label.setText(f"logged {st.committed:,}  queued {st.queued}"
                                  + (f"  UNLOGGED {st.unlogged}" if st.unlogged else "")
                                  + ("" if st.db_ok else "  DATABASE PROBLEM"))

    def _tab_changed(self, index: int) -> None:
        w = self.tabs.widget(index)
        if hasattr(w, "on_shown"):
            w.on_shown()

    # ---- remembered layout ---------------------------------------------------------------
    def _qsettings(self) -> QSettings:
        return QSettings(str(self.services.data_dir / "window.ini"), QSettings.IniFormat)

    def _save_layout(self) -> None:
        q = self._qsettings()
        q.setValue("geometry", self.saveGeometry())
        q.setValue("state", self.saveState())
        q.setValue("tab", self.tabs.currentIndex())
        for w in (self.live, self.history):
            w.save_layout(q)
        q.sync()

    def _restore_layout(self) -> None:
        q = self._qsettings()
        if q.value("geometry") is not None:
            self.restoreGeometry(q.value("geometry"))
        if q.value("state") is not None:
            self.restoreState(q.value("state"))
        self.tabs.setCurrentIndex(int(q.value("tab", 0) or 0))
        for w in (self.live, self.history):
            w.restore_layout(q)
