"""The app's version: one value, `APP_VERSION`, stamped on every logged verdict.

Read from the installed package's metadata (`pip install .` puts it there); a source tree
that was never installed falls back to pyproject.toml's `version`, so a checkout run with
`python main.py` still says which version judged a part.
"""
from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

DISTRIBUTION = "inspect-line"
_PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


def _from_pyproject(path: Path = _PYPROJECT) -> str | None:
    """The [project] table's version line; None when the file is absent or has none."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return None
    project = re.search(r"^\[project\]\s*$(.*?)(?=^\[|\Z)", text, re.M | re.S)
    found = re.search(r'^version\s*=\s*"([^"]+)"', project.group(1), re.M) if project else None
    return found.group(1) if found else None


def _read_version() -> str:
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return _from_pyproject() or "0.0.0+unknown"


APP_VERSION: str = _read_version()


# -- build: which source the running app was made from ---------------------------------------
# `make dist` (packaging/linux/build.sh) writes `git describe` of the commit it packs into
# engine/_build.txt inside the packed copy only; a checkout asks git itself.
_BUILD_FILE = Path(__file__).resolve().parent / "_build.txt"


def _read_build() -> str:
    try:
        text = _BUILD_FILE.read_text(encoding="utf-8").strip()
        if text:
            return text
    except OSError:
        pass
    root = _PYPROJECT.parent
    if not (root / ".git").exists():
        return "unknown"
    import subprocess
    try:
        out = subprocess.run(["git", "-C", str(root), "describe", "--always", "--dirty", "--tags"],
                             capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"


BUILD: str = _read_build()


def version_text() -> str:
    """`inspect-line 0.1.0 (build 1a2b3c4)`: what --version, the title bar and About say."""
    return f"{DISTRIBUTION} {APP_VERSION} (build {BUILD})"
