"""Roles (engine/users.py, app/login.py) and the audit trail (engine/audit.py, app/audit_view.py):
each role's forbidden actions are refused on the screen (disabled, tooltip naming the role)
and by Services (NotAllowed, nothing changed); every audited change appears exactly once
with its old and new value; `python main.py audit` prints them."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from app_fixtures import data_dir, make_window, wait_until  # noqa: F401 (fixture)
from engine.audit import settings_changes
from engine.errors import InspectError
from engine.settings import ProductSettings
from engine.users import (ADMINISTRATOR, ENGINEER, OPERATOR, ROLES_OFF, Access, NotAllowed,
                          UserStore, check_secret, hash_secret)

ROOT = Path(__file__).resolve().parent.parent


# ---- engine: users and secrets ------------------------------------------------------------

def test_secret_hash_is_salted_and_checked():
    a, b = hash_secret("1234"), hash_secret("1234")
    assert a["salt"] != b["salt"] and a["hash"] != b["hash"]       # per-user salt
    assert check_secret("1234", a) and not check_secret("1235", a)
    assert "1234" not in json.dumps(a)
    assert not check_secret("1234", {**a, "hash": "zz"})            # odd entry: no match


def _store(tmp_path, enabled=True) -> UserStore:
    st = UserStore(path=tmp_path / "users.json")
    for name, role, pin in (("anna", ADMINISTRATOR, "1111"), ("ed", ENGINEER, "2222"),
                            ("olga", OPERATOR, "3333")):
        st = st.with_user(name, role, pin)
    st = replace(st, enabled=enabled, idle_minutes=1.0).validate()
    st.save()
    return st


def test_users_file_round_trip_and_fails_closed(tmp_path):
    st = _store(tmp_path)
    back = UserStore.load(st.path)
    assert back.enabled and [u.name for u in back.users] == ["anna", "ed", "olga"]
    assert "3333" not in st.path.read_text()
    st.path.write_text("{ not json")
    broken = UserStore.load(st.path)
    assert broken.enabled and broken.problem          # a damaged file does not open the station
    acc = Access(broken)
    assert acc.role == OPERATOR and not acc.login("anna", "1111")
    assert not UserStore.load(tmp_path / "none.json").enabled      # no file: roles off


def test_store_rules(tmp_path):
    with pytest.raises(InspectError, match="administrator"):
        replace(UserStore().with_user("ed", ENGINEER, "2222"), enabled=True).validate()
    with pytest.raises(InspectError, match="at least 4"):
        UserStore().with_user("x", OPERATOR, "12")
    with pytest.raises(InspectError, match="needs a PIN"):
        UserStore().with_user("x", OPERATOR, None)


def test_roles_and_idle_return(tmp_path):
    now = [1000.0]
    told = []
    acc = Access(_store(tmp_path), on_change=lambda *a: told.append(a), clock=lambda: now[0])
    assert acc.role == OPERATOR and acc.can("label") and not acc.can("threshold")
    with pytest.raises(NotAllowed, match="needs the engineer role"):
        acc.require("threshold")
    assert not acc.login("ed", "9999") and acc.role == OPERATOR
    assert acc.login("ED", "2222") and acc.role == ENGINEER
    assert acc.can("threshold") and acc.can("roi") and not acc.can("settings")
    with pytest.raises(NotAllowed, match="administrator"):
        acc.require("users")
    now[0] += 59
    assert not acc.expire_if_idle()
    acc.touch()
    now[0] += 59
    assert not acc.expire_if_idle() and acc.role == ENGINEER       # the touch restarted it
    now[0] += 2
    assert acc.expire_if_idle() and acc.role == OPERATOR
    kinds = [(a[1], a[4]) for a in told]
    assert kinds == [("login", "refused"), ("login", "logged in"), ("login", OPERATOR)]
    off = Access(UserStore())
    assert off.role == ADMINISTRATOR and off.actor.role == ROLES_OFF and off.can("users")


def test_settings_changes_name_each_field():
    from app_fixtures import tiny_settings
    a = tiny_settings()
    b = replace(a, station="line9", camera=replace(a.camera, exposure_us=500.0),
                layout=replace(a.layout, roi=(0, 0, 64, 64)))
    b = b.with_product(b.current_product, replace(b.product, threshold=0.3, model_file="m.pt"))
    got = {(c.kind, c.target, c.action): (c.old, c.new) for c in settings_changes(a, b)}
    assert got == {("settings", "station", "settings"): ("line1", "line9"),
                   ("camera", "camera: exposure_us", "camera"): (None, 500.0),
                   ("layout", "layout: roi", "roi"): (None, [0, 0, 64, 64]),
                   ("threshold", "demo part: threshold", "threshold"): (None, 0.3),
                   ("model", "demo part: model", "model"): (None, "m.pt")}
    assert settings_changes(a, a) == []
    # the line's outputs are "outputs" (administrator); a password is never written
    c = replace(a, line=replace(a.line, enabled=True, opcua_password="hunter22"))
    got = {c.target: (c.kind, c.old, c.new, c.action) for c in settings_changes(a, c)}
    assert got["line.enabled"] == ("outputs", False, True, "outputs")
    assert got["line.opcua_password"] == ("outputs", None, "(set)", "outputs")
    assert "hunter22" not in repr(settings_changes(a, c))


# ---- the app --------------------------------------------------------------------------------

@pytest.fixture
def win(qtbot, data_dir):
    w = make_window(qtbot, data_dir, autostart=False)
    wait_until(qtbot, lambda: w.services.log is not None, 30, "the inspection log to open")
    yield w
    w.close()


def _roles_on(w, tmp_path) -> None:
    acc = w.services.access
    st = acc.store
    for name, role, pin in (("anna", ADMINISTRATOR, "1111"), ("ed", ENGINEER, "2222"),
                            ("olga", OPERATOR, "3333")):
        st = st.with_user(name, role, pin)
    acc.change_store(replace(st, enabled=True))
    w.access_controls.refresh()


def _audit(w, **kw):
    lg = w.services.log
    lg.writer.flush(timeout=10)
    return lg.audit(limit=None, **kw)


def _log_fail(w) -> int:
    """One FAIL in the log, as the scoring thread would hand it over; its row id."""
    from engine.log import InspectionFilter, InspectionRecord
    from engine.types import Decision, Verdict
    lg = w.services.log
    rec = InspectionRecord(Verdict(7, 0.9, Decision.FAIL, 0.5, model_id="m1"), time.time(),
                           "line1", "sim", w.services.settings.current_product,
                           image=np.zeros((32, 32, 3), np.uint8))
    assert lg.submit(rec, timeout=5)
    lg.writer.flush(timeout=10)
    return lg.page(InspectionFilter(), limit=1).rows[0].id


def test_roles_off_behaves_as_before(win):
    c = win.access_controls
    assert c.missing == []                                  # every gated widget was found
    assert not c.toolbar_action.isVisible()                 # no login on the toolbar
    for w in (win.threshold.apply_button, win.settings_screen.apply_button, win.live.camera_box,
              win.learn.roi):
        assert w.toolTip() == "" or "needs" not in w.toolTip()
    assert win.settings_screen.apply_button.isEnabled() and win.live.camera_box.isEnabled()
    s = win.services.settings
    win.services.save(replace(s, station="line2"))          # anyone may: roles are off
    rows = _audit(win, kind="settings")
    assert [(r.target, r.old, r.new, r.role) for r in rows] == [("station", "line1", "line2", ROLES_OFF)]


def test_each_role_refused_its_forbidden_actions(win, tmp_path, qtbot):
    _roles_on(win, tmp_path)
    sv, c = win.services, win.access_controls
    assert c.toolbar_action.isVisible()
    assert c.who.text() == "operator"
    # operator: run, stop, label; not threshold, ROI, learn, settings, camera, users
    gated = {"threshold": win.threshold.apply_button, "settings": win.settings_screen.apply_button,
             "camera": win.live.camera_box, "roi": win.learn.roi, "learn": win.learn.train_button,
             "users": win.users_screen.content}
    for action, widget in gated.items():
        assert not widget.isEnabled(), action
        assert "role" in widget.toolTip(), action
    assert "engineer" in win.threshold.apply_button.toolTip()
    assert "administrator" in win.settings_screen.apply_button.toolTip()
    win.threshold.setEnabled(True)                          # a screen's own wish: still gated
    assert not win.threshold.apply_button.isEnabled()
    s = sv.settings
    for bad in (s.with_product(s.current_product, replace(s.product, threshold=0.2)),
                replace(s, layout=replace(s.layout, roi=(0, 0, 64, 64))),
                replace(s, camera=replace(s.camera, fps=5.0)),
                replace(s, station="x"),
                s.with_product("new part", ProductSettings())):
        with pytest.raises(NotAllowed):
            sv.save(bad)
    assert sv.settings == s and json.loads(sv.settings_path.read_text())["station"] == s.station
    with pytest.raises(NotAllowed):
        sv.access.change_store(replace(sv.access.store, idle_minutes=9))
    rid = _log_fail(win)
    assert sv.set_label(rid, "false_reject")                # operators mark labels
    assert sv.live_requested is False
    sv.start_live()                                          # and run / stop
    sv.stop_live()

    # engineer: threshold, ROI, products; not settings, camera, users
    assert sv.access.login("ed", "2222")
    c.refresh()
    assert c.who.text() == "ed · engineer"
    assert win.threshold.apply_button.isEnabled() == win.threshold.isEnabled()
    assert win.learn.roi.isEnabled() and not win.settings_screen.apply_button.isEnabled()
    sv.save(s.with_product(s.current_product, replace(s.product, threshold=0.2)))
    sv.save(replace(sv.settings, layout=replace(s.layout, roi=(0, 0, 64, 64))))
    with pytest.raises(NotAllowed, match="administrator"):
        sv.save(replace(sv.settings, camera=replace(s.camera, fps=5.0)))
    with pytest.raises(NotAllowed):
        sv.access.change_store(replace(sv.access.store, idle_minutes=9))

    # administrator: everything
    sv.access.logout()
    assert sv.access.login("anna", "1111")
    c.refresh()
    assert win.settings_screen.apply_button.isEnabled() and win.users_screen.content.isEnabled()
    sv.save(replace(sv.settings, camera=replace(s.camera, fps=5.0)))
    sv.access.change_store(replace(sv.access.store, idle_minutes=9))
    # back to operator after inactivity
    sv.access._last_activity -= 9 * 60 + 1
    c.check_idle()
    assert sv.access.role == OPERATOR and not win.settings_screen.apply_button.isEnabled()


def test_every_audited_change_appears_once(win, tmp_path):
    sv = win.services
    _roles_on(win, tmp_path)
    assert sv.access.login("anna", "1111")
    s = sv.settings
    product = s.current_product
    sv.save(replace(s, station="line7"))
    sv.save(replace(sv.settings, camera=replace(s.camera, exposure_us=800.0)))
    sv.save(replace(sv.settings, layout=replace(s.layout, roi=(0, 0, 64, 48))))
    sv.save(sv.settings.with_product(product, replace(sv.settings.product, threshold=0.25)))
    sv.save(sv.settings.with_product(product, replace(sv.settings.product, threshold=0.3)),
            detail="from the Threshold screen")
    sv.save(sv.settings.with_product("washer", ProductSettings()))
    rid = _log_fail(win)
    sv.set_label(rid, "confirmed_defect", "crack")
    sv.set_label(rid, "false_reject")
    sv.access.change_store(sv.access.store.with_user("nina", OPERATOR, "4444"))
    sv.audit.record("model", product, "m-old", "m-new", detail="activated version 2")
    rows = _audit(win)
    got = [(r.kind, r.target, r.old, r.new) for r in rows if r.kind != "login"]
    want = [
        ("user", "user anna", None, "administrator"), ("user", "user ed", None, "engineer"),
        ("user", "user olga", None, "operator"),
        ("settings", "station", "line1", "line7"),
        ("camera", "camera: exposure_us", None, "800.0"),
        ("layout", "layout: roi", None, "[0, 0, 64, 48]"),
        ("threshold", f"{product}: threshold", None, "0.25"),
        ("threshold", f"{product}: threshold", "0.25", "0.3"),
        ("product", "washer", None, json.dumps(
            {"model_file": "", "review_below": None, "target_false_reject": 0.01,
             "threshold": None}, sort_keys=True)),
        ("label", f"inspection {rid}", None, "confirmed_defect"),
        ("label", f"inspection {rid}", "confirmed_defect", "false_reject"),
        ("user", "user nina", None, "operator"),
        ("model", product, "m-old", "m-new"),
    ]
    got_roles = [g for g in got if g[1] != "roles"]
    assert got_roles == want
    assert [r.new for r in rows if r.target == "roles"] == ["on"]
    by = {(r.kind, r.new): r for r in rows}
    assert by[("threshold", "0.3")].detail == "from the Threshold screen"
    assert by[("threshold", "0.3")].who == "anna" and by[("threshold", "0.3")].role == ADMINISTRATOR
    assert by[("label", "confirmed_defect")].detail == "crack"
    assert [r.new for r in rows if r.kind == "login"] == ["logged in"]


def test_audit_screen_and_command(win, qtbot, tmp_path):
    sv = win.services
    sv.save(replace(sv.settings, station="line3"))
    sv.save(sv.settings.with_product(sv.settings.current_product,
                                     replace(sv.settings.product, threshold=0.4)))
    screen = win.audit_screen
    win.tabs.setCurrentWidget(screen)
    wait_until(qtbot, lambda: screen.table.rowCount() == 2, 10, "two audit rows on screen")
    assert screen.table.item(0, 3).text() == "threshold"              # newest first
    assert screen.table.editTriggers() == screen.table.EditTrigger.NoEditTriggers
    dest = tmp_path / "audit.csv"
    screen.export_to(str(dest))
    wait_until(qtbot, lambda: dest.exists() and dest.read_text().count("\n") == 3, 10, "the CSV")
    assert "line1,line3" in dest.read_text()
    sv.log.writer.flush(timeout=10)
    day = time.strftime("%Y-%m-%d", time.gmtime())
    data = sv.data_dir
    out = subprocess.run([sys.executable, "main.py", "audit", "--since", day, "--data-dir", str(data),
                          "--kind", "threshold"], cwd=ROOT, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert "threshold" in out.stdout and "→ 0.4" in out.stdout and "station" not in out.stdout
    out = subprocess.run([sys.executable, "main.py", "audit", "--since", day, "--data-dir", str(data),
                          "--csv"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.count("\n") == 3
    bad = subprocess.run([sys.executable, "main.py", "audit", "--since", "yesterday",
                          "--data-dir", str(data)], cwd=ROOT, capture_output=True, text=True,
                         timeout=60)
    assert bad.returncode == 2 and "YYYY-MM-DD" in bad.stderr
    none = subprocess.run([sys.executable, "main.py", "audit", "--since", day,
                           "--data-dir", str(tmp_path / "nowhere")], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert none.returncode == 2 and "no inspection log" in none.stderr
    assert not (tmp_path / "nowhere").exists()


def test_a_long_job_keeps_the_role_of_who_started_it(win, tmp_path):
    """Training started by an engineer ends after the station went back to operator: the
    model is still activated, recorded as the engineer's; an operator's own try is refused."""
    sv = win.services
    _roles_on(win, tmp_path)
    assert sv.access.login("ed", "2222")
    started_by = sv.access.actor
    win.access_controls.refresh()
    learn = win.learn
    learn.train_button.setEnabled(True)                    # the screen's wish, allowed
    assert learn.train_button.isEnabled()
    sv.access.logout("no activity")
    win.access_controls.refresh()
    assert not learn.train_button.isEnabled()
    learn.train_button.setEnabled(True)                    # wished again: still refused
    assert not learn.train_button.isEnabled()
    s = sv.settings
    new = s.with_product(s.current_product, replace(s.product, model_file="m.pt"))
    with pytest.raises(NotAllowed):
        sv.save(new)
    sv.save(new, detail="learned", by=started_by)
    assert sv.settings.product.model_file == "m.pt"
    row = [r for r in _audit(win, kind="model")]
    assert [(r.who, r.role, r.new, r.detail) for r in row] == [("ed", ENGINEER, "m.pt", "learned")]
    assert sv.access.login("ed", "2222")
    win.access_controls.refresh()
    assert learn.train_button.isEnabled()                  # the wish was remembered


def test_learn_refuses_an_operator_and_stages_end_as_their_starter(win, tmp_path, qtbot):
    sv = win.services
    _roles_on(win, tmp_path)
    shown = []
    sv.errors.shown.connect(lambda where, msg, serious: shown.append(msg))
    win.learn.train()                                      # as operator: refused, one sentence
    qtbot.waitUntil(lambda: bool(shown), timeout=5000)
    assert "needs the engineer role" in shown[-1] and win.learn.job is None
    # a stage ending after the station went back to operator still makes its model live
    assert sv.access.login("ed", "2222")
    win.learn._by = sv.access.actor                        # as train() records it
    sv.access.logout("no activity")
    win.learn._staged_product = sv.settings.current_product
    from engine.meta import ModelMeta
    win.learn._use_saved(str(tmp_path / "quick.pt"), ModelMeta(model_id="q1"))
    assert sv.settings.product.model_file == str(tmp_path / "quick.pt")
    rows = _audit(win, kind="model")
    assert [(r.who, r.role) for r in rows] == [("ed", ENGINEER)]
