"""The app says its version and build: --version, the window title, About."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from app_fixtures import data_dir, make_window, wait_until  # noqa: F401
from engine import version

ROOT = Path(__file__).resolve().parent.parent


def test_version_comes_from_the_package_and_build_from_git_or_the_packed_file(tmp_path, monkeypatch):
    assert version.APP_VERSION == version._from_pyproject()
    assert version.BUILD and version.BUILD in version.version_text()
    packed = tmp_path / "_build.txt"
    packed.write_text("v0.1.0-3-gabc1234\n")
    monkeypatch.setattr(version, "_BUILD_FILE", packed)
    assert version._read_build() == "v0.1.0-3-gabc1234"


def test_version_flag_prints_version_and_build():
    out = subprocess.run([sys.executable, "main.py", "--version"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == version.version_text()
    assert version.APP_VERSION in out.stdout and "build" in out.stdout


def test_title_and_about_show_version_and_build(qtbot, data_dir):  # noqa: F811
    w = make_window(qtbot, data_dir, autostart=False)
    try:
        assert version.version_text() in w.windowTitle()
        text = w.about_text()
        assert version.APP_VERSION in text and version.BUILD in text
        assert str(data_dir) in text
    finally:
        wait_until(qtbot, lambda: w.services.log is not None, 30, "the inspection log to open")
        w.close()
