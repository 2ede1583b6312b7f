"""Nothing lost, nothing silent, from the app: every judged part is recorded, or the line
stops judging and the Live screen says why in red.

Cases: a PostgreSQL URL in Settings (reachable: logged with pictures beside the data
folder; unreachable: not judged); a read-only database file; a second app on the same data
folder (read-only, names the holder); the database failing mid-run (stops, then resumes);
spool mode with the server stopped mid-run (counted on screen, merged when it returns);
a killed app (said at the next start). Figures are printed: run with -s to see them.
"""
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from app_fixtures import collect_results, data_dir, make_window, tiny_settings, wait_until  # noqa: F401
from engine.settings import ProductSettings, StorageSettings, save_settings

try:
    from pg_server import RestartableServer, pg_server  # noqa: F401
except ImportError:
    from tests.pg_server import RestartableServer, pg_server  # noqa: F401

ROOT = Path(__file__).resolve().parent.parent


def _model_settings(data_dir: Path, storage: StorageSettings | None = None) -> None:
    """Settings with an (untrained but real) model whose threshold 0 FAILs every part."""
    from engine.model import EfficientAD, ModelConfig, save_checkpoint
    path = data_dir / "models" / "untrained.pt"
    if not path.exists():
        save_checkpoint(EfficientAD(ModelConfig(image_size=64)), path,
                        {"threshold": 0.0, "model_id": "untrained", "holdout_scores": [0.1, 0.2, 0.3]})
    s = tiny_settings(products={"p": ProductSettings(model_file=str(path))}, current_product="p")
    if storage is not None:
        s = replace(s, storage=storage)
    save_settings(s, data_dir / "settings.json")


def _count_rows(location, pictures_dir=None) -> int:
    from engine.log import InspectionLog, LogConfig
    with InspectionLog.open(location, LogConfig(pictures_dir=pictures_dir)) as lg:
        return lg.count()


def _assert_not_judging(w, qtbot, words: str) -> None:
    """Frames arrive (the camera runs, for Learn), but no part is judged, and the Live
    screen says why in red."""
    results = collect_results(w.services, qtbot, 5, timeout_s=40)
    assert all(r.verdict is None and r.halted for r in results), results[-1]
    assert w.services.pipeline.parts == 0
    wait_until(qtbot, lambda: "NOT JUDGING" in w.live.banner.text(), 5, "the red banner")
    assert words in w.live.banner.text(), w.live.banner.text()
    assert "#c62828" in w.live.banner.styleSheet()
    wait_until(qtbot, lambda: w.live.verdict.text() == "STOPPED", 5, "STOPPED on the verdict")


# ---- case 1: a PostgreSQL URL in Settings ---------------------------------------------

def test_a_postgres_url_set_in_settings_logs_every_part_with_its_pictures(qtbot, data_dir, pg_server):
    _model_settings(data_dir)
    url = pg_server.new_database()
    w = make_window(qtbot, data_dir, autostart=False)
    try:
        wait_until(qtbot, lambda: w.services.log is not None, 30, "the local log")
        screen = w.settings_screen
        screen.db_url.setText("nosuchdb://qa@plant/line3")           # refused, with the reason
        screen.apply()
        assert "cannot be used" in screen.message.text() or "no driver" in screen.message.text()
        screen.db_url.setText(url)
        screen.apply()
        assert screen.message.text() == "Saved and applied.", screen.message.text()
    finally:
        w.close()
    w = make_window(qtbot, data_dir)                                 # the next start
    try:
        wait_until(qtbot, lambda: w.services.log is not None, 30, "the server log")
        assert w.services.log.engine.url.get_backend_name() == "postgresql"
        results = collect_results(w.services, qtbot, 6, timeout_s=60)
        assert all(r.verdict is not None and not r.halted for r in results)
    finally:
        w.close()
    parts = w.services.pipeline.parts
    pictures = data_dir / "pictures"                                 # beside the data folder
    assert _count_rows(url, pictures) == parts >= 6
    assert len(list(pictures.rglob("*.png"))) == parts               # threshold 0: all FAIL


def test_an_unreachable_server_stops_judging_with_the_reason(qtbot, data_dir):
    _model_settings(data_dir, StorageSettings(database_url="postgresql://nobody@127.0.0.1:1/none"))
    w = make_window(qtbot, data_dir)
    try:
        wait_until(qtbot, lambda: w.services.log_state == "failed", 30, "the log to fail")
        _assert_not_judging(w, qtbot, "could not be opened")
        assert "127.0.0.1:1" in w.live.banner.text()
    finally:
        w.close()


# ---- case 2: a read-only database file, a second app on the same data folder ----------

@pytest.fixture
def read_only_db(data_dir):
    """The log's database file made read-only by a read-only bind mount (root ignores
    file modes; the tests run as root in CI)."""
    from engine.log import InspectionLog
    InspectionLog.open(data_dir / "log").close()
    db = data_dir / "log" / "inspections.sqlite3"
    done = subprocess.run(["mount", "--bind", str(db), str(db)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot bind-mount the database read-only (needs root): {done.stderr.strip()}")
    subprocess.run(["mount", "-o", "remount,bind,ro", str(db)], check=True)
    yield db
    subprocess.run(["umount", "-l", str(db)], check=False)


def test_a_read_only_database_file_stops_judging(qtbot, data_dir, read_only_db):
    _model_settings(data_dir)
    w = make_window(qtbot, data_dir)
    try:
        wait_until(qtbot, lambda: w.services.log_state == "failed", 30, "the log to fail")
        _assert_not_judging(w, qtbot, "readonly database")
    finally:
        w.close()


def _fill(folder: Path, n: int) -> None:
    from engine.log import InspectionLog, InspectionRecord
    from engine.types import Decision, Verdict
    with InspectionLog.open(folder) as lg:
        writer = lg.start_writer()
        for i in range(n):
            writer.submit(InspectionRecord(Verdict(i, 0.9, Decision.FAIL, 0.5, model_id="m"),
                                           time.time() - 60 + i, "line1", "sim", "p"))
        assert writer.flush(20)


def test_a_second_app_on_the_same_data_folder_opens_read_only_and_names_the_first(qtbot, data_dir):
    _model_settings(data_dir)
    _fill(data_dir / "log", 3)
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    first = subprocess.Popen([sys.executable, "main.py", "--data-dir", str(data_dir),
                              "--no-autostart", "--quit-after", "120"], cwd=ROOT, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lock = data_dir / "log" / "pictures" / ".writer.lock"
    try:
        deadline = time.time() + 90
        while time.time() < deadline and first.poll() is None:
            try:
                if json.loads(lock.read_text() or "{}").get("pid") == first.pid:
                    break
            except ValueError:
                pass
            time.sleep(0.2)
        else:
            pytest.fail(f"the first app did not open its log: {first.stderr.read()[-2000:]}")
        w = make_window(qtbot, data_dir)                              # the second app
        try:
            wait_until(qtbot, lambda: w.services.log_state == "read_only", 30, "a read-only log")
            _assert_not_judging(w, qtbot, f"in use by process {first.pid} on {socket.gethostname()}")
            h = w.history                                             # History works
            w.tabs.setCurrentWidget(h)
            wait_until(qtbot, lambda: h.model.rowCount() == 3, 20, "the first app's rows")
        finally:
            w.close()
        assert first.poll() is None                                   # the first one runs on
    finally:
        first.kill()
        first.wait(10)


# ---- the database failing while the line runs ----------------------------------------

def test_a_database_failing_mid_run_stops_judging_then_resumes_and_loses_nothing(qtbot, data_dir):
    _model_settings(data_dir)
    w = make_window(qtbot, data_dir)
    try:
        wait_until(qtbot, lambda: w.services.log is not None, 30, "the log")
        collect_results(w.services, qtbot, 5, timeout_s=40)
        blocker = sqlite3.connect(data_dir / "log" / "inspections.sqlite3", isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")                 # another program holds the database
        t0 = time.monotonic()
        wait_until(qtbot, lambda: w.live.last_result is not None and w.live.last_result.halted,
                   20, "judging to stop")
        took = time.monotonic() - t0
        wait_until(qtbot, lambda: "NOT JUDGING" in w.live.banner.text(), 5, "the red banner")
        assert "accepted nothing" in w.live.banner.text()
        parts = w.services.pipeline.parts
        collect_results(w.services, qtbot, 5, timeout_s=20)
        assert w.services.pipeline.parts == parts          # not judging while it fails
        blocker.execute("COMMIT")
        blocker.close()
        wait_until(qtbot, lambda: w.services.pipeline.parts > parts + 3, 40, "judging to resume")
        wait_until(qtbot, lambda: "NOT JUDGING" not in w.live.banner.text(), 5, "the banner to go")
    finally:
        w.close()
    judged = w.services.pipeline.parts
    rows = _count_rows(data_dir / "log")
    print(f"\nSQLite locked mid-run (stop): judging stopped {took:.1f} s after the lock, "
          f"{parts} judged before; judged {judged}, committed {rows}, lost {judged - rows}")
    assert took < 3.0 + 6                                   # db_stop_after_s + a frame and a retry
    assert rows == judged




def test_spool_mode_judges_on_while_the_server_is_down_and_counts_it_on_screen(qtbot, data_dir):
    server = RestartableServer()
    server.start()
    if not server.url:
        pytest.skip(f"no PostgreSQL server: {server.skip_reason}")
    try:
        url = server.new_database()
        _model_settings(data_dir, StorageSettings(database_url=url, when_log_fails="spool"))
        w = make_window(qtbot, data_dir)
        try:
            wait_until(qtbot, lambda: w.services.log is not None, 30, "the server log")
            collect_results(w.services, qtbot, 3, timeout_s=40)
            server.pause()
            wait_until(qtbot, lambda: "spooled" in w.live.banner.text(), 30, "the spooled count")
            # Judging goes on. Counted on the pipeline itself: live results already queued
            # to the GUI thread when `before` is read would count twice (CI, under load).
            before = w.services.pipeline.parts
            wait_until(qtbot, lambda: w.services.pipeline.parts >= before + 5, 30,
                       "five more parts judged with the server down")
            collect_results(w.services, qtbot, 1, timeout_s=30)    # and still shown
            assert "NOT JUDGING" not in w.live.banner.text()
            spooled = w.services.log.writer.stats().spooled
            assert spooled > 0
            server.resume()
            wait_until(qtbot, lambda: "spooled" not in w.live.banner.text(), 40, "the merge")
        finally:
            w.close()
        judged = w.services.pipeline.parts
        rows = _count_rows(url, data_dir / "pictures")
        print(f"\nPostgreSQL stopped mid-run in the app (spool): judged {judged}, committed "
              f"{rows}, spooled while down {spooled} (on screen), lost {judged - rows}")
        assert rows == judged
    finally:
        server.stop()


# ---- case 3 in the app: a killed app is said at the next start ------------------------

KILLED = r"""
import sys, time
from engine.log import InspectionLog, InspectionRecord
from engine.types import Decision, Verdict
log = InspectionLog.open(sys.argv[1])
writer = log.start_writer()
for i in range(10):
    writer.submit(InspectionRecord(Verdict(i, 0.9, Decision.FAIL, 0.5, model_id="m"),
                                   time.time(), "line1", "sim", "p"))
print("ready", flush=True)
time.sleep(60)
"""


def test_a_killed_app_is_reported_at_the_next_start(qtbot, data_dir):
    child = subprocess.Popen([sys.executable, "-c", KILLED, str(data_dir / "log")], cwd=ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "ready", child.stderr.read()
    child.send_signal(signal.SIGKILL)
    child.wait(10)
    w = make_window(qtbot, data_dir, autostart=False)
    try:
        wait_until(qtbot, lambda: w.services.log is not None, 30, "the log")
        wait_until(qtbot, lambda: "stopped abruptly" in w.live.banner.text(), 5, "the notice")
        assert "up to 1 verdict after it may be missing" in w.live.banner.text()
        assert w.services.log.count() == 10
    finally:
        w.close()


def test_when_log_fails_takes_stop_or_spool_only():
    from engine.errors import InspectError
    with pytest.raises(InspectError, match="stop or spool"):
        replace(tiny_settings(), storage=StorageSettings(when_log_fails="carry on")).validate()
