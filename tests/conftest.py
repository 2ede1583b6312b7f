import os
import sys
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# `auto`'s timings of the scoring paths (engine/autopath.py): one cache per test session,
# never the user's own
import tempfile  # noqa: E402
os.environ["INSPECT_LINE_CACHE"] = tempfile.mkdtemp(prefix="inspect-test-cache-")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
SHARED_DATA = ROOT.parent / "shared" / "data"


import gc  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _collect_cycles_on_the_main_thread():
    """After each test, on this (the GUI) thread: Qt objects left in reference cycles by a
    closed window must not be collected later by some worker thread (app/gc_guard.py)."""
    yield
    if "PySide6.QtWidgets" in sys.modules:
        from app import gc_guard
        gc_guard.install()          # automatic collection off from the first Qt test on
    gc.collect()
