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
