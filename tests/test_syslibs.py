"""The system-library check that runs before Qt: a fake lookup with one library missing,
the real ldconfig lookup, and the app's start refusing with the install command."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from engine import syslibs

ROOT = Path(__file__).resolve().parent.parent


def _all_but(soname: str):
    return lambda: set(syslibs.XCB_LIBRARIES) - {soname} | {"libc.so.6"}


def test_one_missing_library_gives_its_package_in_one_command():
    text = syslibs.check(env={"QT_QPA_PLATFORM": "xcb"}, lookup=_all_but("libxcb-cursor.so.0"))
    assert text is not None and "libxcb-cursor.so.0" in text
    command = [line.strip() for line in text.splitlines() if "apt-get install" in line]
    assert len(command) == 1 and command[0].endswith("apt-get install -y libxcb-cursor0")


def test_nothing_missing_and_other_platforms_start():
    assert syslibs.check(env={}, lookup=lambda: set(syslibs.XCB_LIBRARIES)) is None
    missing_all = lambda: {"libc.so.6"}                      # noqa: E731
    for platform in ("offscreen", "wayland", "minimal"):
        assert syslibs.check(env={"QT_QPA_PLATFORM": platform}, lookup=missing_all) is None
    wayland = {"WAYLAND_DISPLAY": "wayland-0", "XDG_SESSION_TYPE": "wayland"}
    assert syslibs.check(env=wayland, lookup=missing_all) is None
    assert syslibs.check(env={"QT_QPA_PLATFORM": "xcb"}, lookup=missing_all) is not None


def test_a_lookup_that_finds_nothing_proves_nothing():
    assert syslibs.missing_libraries(lookup=lambda: set()) == []


def test_two_sonames_of_one_package_name_it_once():
    missing = ["libglib-2.0.so.0", "libgthread-2.0.so.0"]
    assert syslibs.install_command(missing).split()[-1] == "libglib2.0-0"
    assert syslibs.install_command(missing).count("libglib2.0-0") == 1


def test_real_ldconfig_lookup_runs_and_sees_this_machine():
    found = syslibs.ldconfig_libraries()
    # This machine runs the GUI tests offscreen, which needs libGL/libxkbcommon (CI installs them).
    assert "libc.so.6" in found and "libGL.so.1" in found
    assert isinstance(syslibs.missing_libraries(), list)


def test_script_runs_without_the_apps_packages():
    """The installer runs it with the system python before any package is installed."""
    out = subprocess.run([sys.executable, "-I", str(ROOT / "engine" / "syslibs.py"), "--all"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "libxcb-cursor0" in out.stdout and "libxkbcommon-x11-0" in out.stdout


def test_app_refuses_to_start_qt_with_the_sentence(monkeypatch, capsys, tmp_path):
    import app.main as app_main
    monkeypatch.setenv("QT_QPA_PLATFORM", "xcb")
    monkeypatch.setattr(syslibs, "ldconfig_libraries", _all_but("libxcb-icccm.so.4"))
    code = app_main.main(["--data-dir", str(tmp_path), "--quit-after", "0"])
    err = capsys.readouterr().err
    assert code == 1
    assert "apt-get install -y libxcb-icccm4" in err
    assert "could not load the Qt platform plugin" not in err
