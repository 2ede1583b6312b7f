"""packaging/linux: install.sh / uninstall.sh on a small artifact of the same layout (the
real one, with the torch wheels, is `make dist-check`: minutes). The app's source is this
checkout; the wheelhouse holds one tiny wheel made here, so the install runs offline in
seconds through the same pip --no-index path; `--version` needs only the standard library."""
from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from engine.version import APP_VERSION

ROOT = Path(__file__).resolve().parent.parent
LINUX = ROOT / "packaging" / "linux"
pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux installer")


def _tiny_wheel(folder: Path) -> str:
    """A valid pure-Python wheel `inspect-line-probe 1.0` holding one module."""
    name, files = "inspect_line_probe-1.0", {"inspect_line_probe.py": b"OK = True\n"}
    files[f"{name}.dist-info/METADATA"] = b"Metadata-Version: 2.1\nName: inspect-line-probe\nVersion: 1.0\n"
    files[f"{name}.dist-info/WHEEL"] = (b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                                        b"Tag: py3-none-any\n")
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append(f"{name}.dist-info/RECORD,,")
    files[f"{name}.dist-info/RECORD"] = ("\n".join(record) + "\n").encode()
    with zipfile.ZipFile(folder / f"{name}-py3-none-any.whl", "w") as z:
        for path, data in files.items():
            z.writestr(path, data)
    return "inspect-line-probe"


@pytest.fixture
def artifact(tmp_path) -> Path:
    dist = tmp_path / "dist"
    app = dist / "app"
    app.mkdir(parents=True)
    for part in ("main.py", "pyproject.toml"):
        shutil.copy(ROOT / part, app / part)
    for part in ("engine", "app", "packaging"):
        shutil.copytree(ROOT / part, app / part, ignore=shutil.ignore_patterns("__pycache__"))
    (app / "engine" / "_build.txt").write_text("v0.1.0-test\n")    # as build.sh writes it
    (dist / "wheelhouse").mkdir()
    probe = _tiny_wheel(dist / "wheelhouse")
    (dist / "requirements.txt").write_text(probe + "\n")
    (dist / "requirements-export.txt").write_text(probe + "\n")
    (dist / "constraints.txt").write_text(f"{probe}==1.0\n")
    for script in ("install.sh", "uninstall.sh"):
        shutil.copy(LINUX / script, dist / script)
    return dist


def _env(tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    # no pip configuration and no index: only the wheelhouse can serve the install
    return {"HOME": str(home), "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PIP_NO_INDEX": "1",
            "PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}


def _run(cmd, env, ok=True):
    out = subprocess.run([str(c) for c in cmd], env=env, capture_output=True, text=True, timeout=300)
    if ok:
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out


def test_install_upgrade_and_uninstall_keep_the_data(artifact, tmp_path):
    env, prefix, data = _env(tmp_path), tmp_path / "opt", tmp_path / "data"
    install = [artifact / "install.sh", "--prefix", prefix, "--data", data, "--python",
               sys._base_executable, "--headless", "--autostart", "--with", "export"]
    out = _run(install, env)
    packed = f"inspect-line {APP_VERSION} (build v0.1.0-test)"
    assert packed in out.stdout
    launcher = prefix / "bin" / "inspect-line"
    assert f'INSPECT_LINE_HOME:={data}' in launcher.read_text()
    assert _run([launcher, "--version"], env).stdout.strip() == packed
    probe = _run([prefix / "venv" / "bin" / "python", "-c", "import inspect_line_probe"], env)
    assert probe.returncode == 0                       # the wheelhouse was installed
    unit = Path(env["HOME"]) / ".config" / "systemd" / "user" / "inspect-line.service"
    assert f"ExecStart={prefix}/bin/inspect-line --fullscreen" in unit.read_text()
    assert "@" not in unit.read_text().split("[Service]")[1].split("[Install]")[0]

    (data / "settings.json").write_text("{}")          # what an operator made
    _run(install, env)                                 # upgrade in place
    assert (data / "settings.json").read_text() == "{}"
    assert not (prefix / "venv.old").exists() and not (prefix / "app.new").exists()

    out = _run([prefix / "uninstall.sh"], env)
    assert not prefix.exists() and not unit.exists()
    assert (data / "settings.json").exists() and "data kept" in out.stdout


def test_uninstall_purge_removes_the_data(artifact, tmp_path):
    env, prefix, data = _env(tmp_path), tmp_path / "opt", tmp_path / "data"
    _run([artifact / "install.sh", "--prefix", prefix, "--data", data, "--python",
          sys._base_executable, "--headless"], env)
    (data / "settings.json").write_text("{}")
    _run([prefix / "uninstall.sh", "--purge", "--yes"], env)
    assert not data.exists() and not prefix.exists()


def test_a_data_folder_inside_the_install_folder_is_refused(artifact, tmp_path):
    env, prefix = _env(tmp_path), tmp_path / "opt"
    out = _run([artifact / "install.sh", "--prefix", prefix, "--data", prefix / "data",
                "--python", sys._base_executable, "--headless"], env, ok=False)
    assert out.returncode != 0 and "must not lie inside the install folder" in out.stderr
    assert not (prefix / "venv").exists()


def test_unknown_extra_is_one_sentence(artifact, tmp_path):
    out = _run([artifact / "install.sh", "--prefix", tmp_path / "opt", "--python",
                sys._base_executable, "--headless", "--with", "gpu"], _env(tmp_path), ok=False)
    assert "no extra 'gpu' in this installer" in out.stderr


def test_unit_templates_name_the_launcher_and_the_runner():
    runner = (LINUX / "inspect-line-runner@.service").read_text()
    assert "ExecStart=@PREFIX@/bin/inspect-line line" in runner and "User=%i" in runner
    assert "INSPECT_LINE_HOME=@DATA@" in runner
    desktop = (LINUX / "inspect-line.desktop").read_text()
    assert "Exec=@PREFIX@/bin/inspect-line" in desktop and "Type=Application" in desktop
    for script in ("build.sh", "install.sh", "uninstall.sh", "check_dist.sh"):
        assert _run(["bash", "-n", LINUX / script], dict(os.environ)).returncode == 0
