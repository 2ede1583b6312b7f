"""Roles on the screens: the toolbar's login, the return to operator after inactivity, the
gate that disables what the role in force may not do (tooltip: which role is needed), and
the administrator's Users page. The rules themselves are engine/users.py; every change is
also refused by Services (the engine-side check), so a button is never the only guard.

With roles off (the default) nothing here shows but the Users page, where an administrator
turns them on; the app then behaves exactly as before roles existed."""
from __future__ import annotations

import logging
from dataclasses import replace

from PySide6.QtCore import QEvent, QObject, QTimer, Signal
from PySide6.QtWidgets import (QCheckBox, QComboBox, QDialog, QDialogButtonBox, QDoubleSpinBox,
                               QFormLayout, QHBoxLayout, QLabel, QLineEdit, QPushButton,
                               QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget)

from engine.errors import InspectError
from engine.users import ROLES, ROLES_OFF

IDLE_CHECK_MS = 5000
log = logging.getLogger("inspect.app")

# window attribute path -> the action it performs (engine/users.ACTIONS). Optional ones
# (another screen's button that may not exist in this version) are skipped if absent.
GATED = (
    ("learn.train_button", "learn"), ("learn.save_button", "model"),
    ("learn.target_frr", "learn"), ("learn.image_size", "learn"),
    ("learn.roi", "roi"), ("learn.polygon", "roi"), ("learn.tiling", "roi"),
    ("learn.tile_scale", "roi"), ("learn.layout_preview", "roi"),
    ("learn.relearn_button", "relearn"),
    ("threshold.apply_button", "threshold"),
    ("settings_screen.apply_button", "settings"),
    ("live.camera_box", "camera"),
)
OPTIONAL = {"learn.relearn_button", "learn.layout_preview"}


def _find(root, path: str):
    obj = root
    for name in path.split("."):
        obj = getattr(obj, name, None)
        if obj is None:
            return None
    return obj


class RoleGate(QObject):
    """Keeps each registered widget disabled while the role may not do its action, with a
    tooltip saying which role is needed. A screen's own setEnabled(x) calls still work:
    the widget's setEnabled is wrapped so that the screen's wish is remembered and the
    role is applied on top (enabled = wished and allowed)."""

    def __init__(self, access, parent=None):
        super().__init__(parent)
        self.access = access
        self._items: list[tuple[QWidget, str, list, str]] = []

    def add(self, widget: QWidget, action: str) -> None:
        wished = [widget.isEnabled()]
        tip = widget.toolTip()

        def set_enabled(on: bool, w=widget, a=action, wished=wished) -> None:
            wished[0] = bool(on)
            QWidget.setEnabled(w, bool(on) and self.access.can(a))
        widget.setEnabled = set_enabled          # the screens call it from Python
        self._items.append((widget, action, wished, tip))
        self._apply(widget, action, wished, tip)

    def update(self) -> None:
        for item in self._items:
            self._apply(*item)

    def _apply(self, widget, action, wished, tip) -> None:
        why = self.access.why_not(action)
        QWidget.setEnabled(widget, wished[0] and not why)
        widget.setToolTip(why or tip)

    def why(self, widget: QWidget) -> str:
        return next((self.access.why_not(a) for w, a, _, _ in self._items if w is widget), "")


class LoginDialog(QDialog):
    def __init__(self, access, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Log in")
        self.access = access
        self.name = QComboBox()
        self.name.setEditable(True)
        self.name.addItems(sorted(u.name for u in access.store.users))
        self.secret = QLineEdit()
        self.secret.setEchoMode(QLineEdit.Password)
        self.message = QLabel("")
        self.message.setStyleSheet("color:#b00020;")
        form = QFormLayout(self)
        form.addRow("User", self.name)
        form.addRow("PIN or password", self.secret)
        form.addRow(self.message)
        buttons = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel)
        buttons.accepted.connect(self.try_login)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)

    def try_login(self) -> None:
        if self.access.login(self.name.currentText(), self.secret.text()):
            self.accept()
        else:
            self.secret.clear()
            self.message.setText("Wrong name or PIN/password.")


class AccessControls(QObject):
    """The toolbar's login, the gate, the idle return to operator. One per window."""
    changed = Signal()

    def __init__(self, window):
        super().__init__(window)
        self.window = window
        self.services = window.services
        self.access = window.services.access
        self.gate = RoleGate(self.access, self)
        self.who = QLabel()
        self.who.setObjectName("who")
        self.who.setStyleSheet("font-weight:bold; padding:0 6px;")
        self.button = QPushButton("Log in…")
        self.button.clicked.connect(self._clicked)
        self.box = QWidget()
        row = QHBoxLayout(self.box)
        row.setContentsMargins(6, 0, 0, 0)
        row.addWidget(self.who)
        row.addWidget(self.button)
        self.toolbar_action = None
        self._idle = QTimer(self)
        self._idle.timeout.connect(self.check_idle)
        self._idle.start(IDLE_CHECK_MS)
        from PySide6.QtWidgets import QApplication
        QApplication.instance().installEventFilter(self)

    def gate_window(self) -> None:
        """A widget renamed on its screen is logged (and a test fails), never a reason for
        the app not to open: Services still refuses what the role may not do."""
        self.missing = [p for p, _ in GATED if _find(self.window, p) is None and p not in OPTIONAL]
        for path in self.missing:
            log.warning("the role gate cannot find %s", path)
        for path, action in GATED:
            w = _find(self.window, path)
            if w is not None:
                self.gate.add(w, action)
        self.refresh()

    def eventFilter(self, obj, event) -> bool:       # any key or click: still here
        if event.type() in (QEvent.KeyPress, QEvent.MouseButtonPress):
            self.access.touch()
        return False

    def check_idle(self) -> None:
        if self.access.expire_if_idle():
            self.refresh()
            self.window.statusBar().showMessage(
                f"No activity for {self.access.store.idle_minutes:g} minutes: back to operator.", 15000)

    def _clicked(self) -> None:
        if self.access.user_name is not None:
            self.access.logout()
            self.refresh()
            return
        LoginDialog(self.access, self.window).exec()
        self.refresh()

    def refresh(self) -> None:
        """Show who is in and apply the role to every gated widget."""
        on = self.access.enabled
        if self.toolbar_action is not None:       # a toolbar widget shows through its action
            self.toolbar_action.setVisible(on)
        a = self.access.actor
        self.who.setText(f"{a.name} · {a.role}" if self.access.user_name else "operator")
        self.button.setText("Log out" if self.access.user_name else "Log in…")
        self.gate.update()
        self.changed.emit()


def install_access(window) -> AccessControls:
    """The one hook in the main window: login on the toolbar, the Audit and Users pages,
    the gate on every screen's change buttons."""
    from app.audit_view import AuditScreen
    controls = AccessControls(window)
    controls.toolbar_action = window.findChild(QObject, "main-toolbar").addWidget(controls.box)
    window.audit_screen = AuditScreen(window.services)
    window.users_screen = UsersScreen(window.services, controls)
    window.tabs.addTab(window.audit_screen, "Audit")
    window.tabs.addTab(window.users_screen, "Users")
    controls.gate_window()
    return controls


class UsersScreen(QWidget):
    """The administrator's page: roles on/off, the return to operator, users and roles."""

    def __init__(self, services, controls: AccessControls):
        super().__init__()
        self.services = services
        self.access = services.access
        self.controls = controls
        self.enabled_box = QCheckBox("Roles on: operators, engineers and administrators log in "
                                     "(off: everyone may do everything, as on a single PC)")
        self.idle = QDoubleSpinBox()
        self.idle.setRange(0.5, 1440)
        self.idle.setDecimals(1)
        self.idle.setSuffix(" min")
        apply_roles = QPushButton("Apply")
        apply_roles.clicked.connect(self.apply_roles)
        self.table = QTableWidget(0, 2)
        self.table.setHorizontalHeaderLabels(["user", "role"])
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.setEditTriggers(QTableWidget.NoEditTriggers)
        self.table.setSelectionBehavior(QTableWidget.SelectRows)
        self.table.itemSelectionChanged.connect(self._selected)
        self.name = QLineEdit()
        self.role = QComboBox()
        self.role.addItems(ROLES)
        self.secret = QLineEdit()
        self.secret.setEchoMode(QLineEdit.Password)
        self.secret.setPlaceholderText("new PIN or password (empty: keep the current one)")
        self.save_button = QPushButton("Add or change user")
        self.save_button.clicked.connect(self.save_user)
        self.remove_button = QPushButton("Remove user")
        self.remove_button.clicked.connect(self.remove_user)
        self.message = QLabel("")
        self.message.setWordWrap(True)
        self.reason = QLabel("")
        self.reason.setStyleSheet("color:#5c4400; font-size:15px;")

        self.content = QWidget()
        form = QFormLayout()
        form.addRow(self.enabled_box)
        form.addRow("Back to operator after no activity for", self.idle)
        form.addRow(apply_roles)
        form.addRow(QLabel("<b>Users</b> (PINs and passwords are stored as scrypt hashes in "
                           f"{services.users_path})"))
        form.addRow(self.table)
        form.addRow("Name", self.name)
        form.addRow("Role", self.role)
        form.addRow("PIN or password", self.secret)
        buttons = QHBoxLayout()
        buttons.addWidget(self.save_button)
        buttons.addWidget(self.remove_button)
        buttons.addStretch(1)
        form.addRow(buttons)
        self.content.setLayout(form)
        lay = QVBoxLayout(self)
        lay.addWidget(self.reason)
        lay.addWidget(self.content)
        lay.addWidget(self.message)
        lay.addStretch(1)
        controls.gate.add(self.content, "users")
        controls.changed.connect(self.load)
        self.load()

    def load(self) -> None:
        st = self.access.store
        self.enabled_box.setChecked(st.enabled)
        self.idle.setValue(st.idle_minutes)
        self.table.setRowCount(len(st.users))
        for i, u in enumerate(sorted(st.users, key=lambda u: u.name.casefold())):
            self.table.setItem(i, 0, QTableWidgetItem(u.name))
            self.table.setItem(i, 1, QTableWidgetItem(u.role))
        why = self.access.why_not("users")
        self.reason.setText(why or st.problem)
        self.reason.setVisible(bool(why or st.problem))

    def on_shown(self) -> None:
        self.load()

    def _selected(self) -> None:
        rows = self.table.selectionModel().selectedRows()
        if rows:
            self.name.setText(self.table.item(rows[0].row(), 0).text())
            self.role.setCurrentText(self.table.item(rows[0].row(), 1).text())

    def _change(self, make) -> None:
        try:
            new = make(self.access.store)
            self.access.change_store(new)
        except InspectError as exc:                  # NotAllowed too: one sentence
            self.message.setStyleSheet("color:#b00020; font-size:14px;")
            self.message.setText(str(exc))
            return
        except OSError as exc:
            self.services.errors.report("Users", exc)
            return
        self.message.setStyleSheet("color:#1b7f3b; font-size:14px;")
        self.message.setText("Saved." + (" Roles are on: log in on the toolbar."
                                         if new.enabled and not self.access.user_name else ""))
        self.secret.clear()
        self.controls.refresh()

    def apply_roles(self) -> None:
        self._change(lambda st: replace(st, enabled=self.enabled_box.isChecked(),
                                        idle_minutes=self.idle.value()).validate())

    def save_user(self) -> None:
        secret = self.secret.text() or None
        self._change(lambda st: st.with_user(self.name.text(), self.role.currentText(), secret))

    def remove_user(self) -> None:
        self._change(lambda st: st.without_user(self.name.text()))


__all__ = ["AccessControls", "LoginDialog", "RoleGate", "UsersScreen", "install_access",
           "ROLES_OFF"]
