"""The journal: a killed app loses at most the stated bound, a database down mid-run stops
the line (or spools and merges), a non-finite score is logged with its reason.

Figures are printed (run with -s to see them):
    .venv/bin/python -m pytest -q -s tests/test_log_journal.py
"""
import math
import os
import re
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from engine.log import InspectionFilter, InspectionLog, LogConfig, PictureState, SortKey
from engine.log.database import make_engine, resolve
from engine.log import ABRUPT_BOUND
from engine.log.migrations import migrate
from engine.log.schema import inspections
from engine.types import Decision, Verdict, decide

try:
    from pg_server import LogPlace, RestartableServer, log_place, make_record, pg_server, picture  # noqa: F401
except ImportError:
    from tests.pg_server import LogPlace, RestartableServer, log_place, make_record, pg_server, picture  # noqa: F401

ROOT = Path(__file__).resolve().parent.parent

# The child: a line judging parts at `rate` per second (0: as fast as it can), a FAIL with
# a camera-sized picture and overlay every third part, through the real writer. Before each
# verdict is handed over, the number judged so far goes to `counter` (one pwrite: what the
# OS has survives the SIGKILL), so the parent knows exactly how many were judged.
CHILD = r"""
import os, struct, sys, time
import numpy as np
from engine.log import InspectionLog, InspectionRecord, LogConfig
from engine.types import Decision, Verdict
location, pictures, counter, rate = sys.argv[1], sys.argv[2] or None, sys.argv[3], float(sys.argv[4])
log = InspectionLog.open(location, LogConfig(pictures_dir=pictures, warn_free_mb=1, reserve_free_mb=0))
writer = log.start_writer()
rng = np.random.default_rng(0)
images = [rng.integers(0, 256, (480, 640, 3), dtype=np.uint8) for _ in range(3)]
fd = os.open(counter, os.O_RDWR | os.O_CREAT)
print("ready", flush=True)
t0, i = time.monotonic(), 0
while True:
    if rate:
        time.sleep(max(0.0, t0 + i / rate - time.monotonic()))
    fail = i % 3 == 0
    verdict = Verdict(i, 0.9 if fail else 0.1, Decision.FAIL if fail else Decision.PASS, 0.5,
                      None, "m1")
    os.pwrite(fd, struct.pack("q", i + 1), 0)            # judged: i + 1 parts
    writer.submit(InspectionRecord(verdict, time.time(), "st1", "cam1", "P",
                                   image=images[i % 3] if fail else None,
                                   overlay=images[(i + 1) % 3] if fail else None))
    i += 1
"""


def _judged(counter: Path) -> int:
    data = counter.read_bytes() if counter.exists() else b""
    return struct.unpack("q", data[:8])[0] if len(data) >= 8 else 0


def _rows_in_db(place: LogPlace) -> int:
    engine = make_engine(resolve(place.location, place.pictures_dir)[0])
    try:
        with engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(inspections)).scalar_one()
    except Exception:                      # the tables may not exist yet
        return 0
    finally:
        engine.dispose()


@pytest.mark.parametrize("rate, kill_after", [(100.0, 400), (0.0, 6000)], ids=["paced-100", "burst"])
def test_sigkill_loses_at_most_the_stated_bound(log_place, tmp_path, rate, kill_after):
    counter = tmp_path / "judged"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, log_place.location, str(log_place.pictures_dir or ""),
         str(counter), str(rate)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready", child.stderr.read()
        deadline = time.time() + 90
        while _judged(counter) < kill_after and time.time() < deadline:
            time.sleep(0.02)
        child.send_signal(signal.SIGKILL)          # mid-burst: the writer is behind
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL
    judged = _judged(counter)
    committed = _rows_in_db(log_place)             # what the killed writer had committed
    events = []
    with log_place.open(on_event=events.append) as log:
        rows, counted = log.count(), log.unlogged()
        with log.engine.connect() as conn:
            distinct = conn.execute(select(func.count(inspections.c.frame_id.distinct()))).scalar_one()
            missing = conn.execute(select(func.count()).select_from(inspections).where(
                inspections.c.picture_state == PictureState.MISSING.value)).scalar_one()
        fails = sum(r.fails for r in log.summary(InspectionFilter(start=time.time() - 86400)))
        abrupt = [e for e in events if e.kind == "abrupt_stop"]
    lost = judged - rows - counted
    print(f"\nSIGKILL {log_place.backend} rate={rate or 'max'}/s: judged {judged}, committed before "
          f"the kill {committed}, recovered from the journal {log.recovered.rows} rows + "
          f"{log.recovered.counted} counts, in the log now {rows} rows + {counted} counted, "
          f"FAIL {fails} ({missing} rows without their pictures), lost {lost}, bound {ABRUPT_BOUND}")
    assert 0 <= lost <= ABRUPT_BOUND
    assert distinct == rows                        # nothing written twice
    assert fails in ((judged + 2) // 3, (judged + 1) // 3)   # every FAIL is there (± the last)
    assert abrupt and f"up to {ABRUPT_BOUND} verdict" in abrupt[0].message
    assert re.search(r"stopped abruptly at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d", abrupt[0].message)
    with log_place.open(on_event=events.append) as log:   # it closed cleanly this time
        assert log.recovered.rows == 0 and log.count() == rows
        assert log.abrupt_stop == ""


def _nan_record(i: int, image=None):
    import time as _t
    from engine.log import InspectionRecord
    score = float("nan")
    v = Verdict(frame_id=i, score=score, decision=decide(score, 0.8), threshold=0.8, model_id="m1")
    return InspectionRecord(v, _t.time(), "st1", "cam1", "A", image=image, overlay=image)


def test_a_nan_score_is_committed_as_a_fail_with_its_reason(log_place, tmp_path):
    events = []
    with log_place.open(on_event=events.append) as log:
        writer = log.start_writer()
        writer.submit(make_record(1, "PASS"))
        writer.submit(_nan_record(2, image=picture(2)))
        writer.submit(make_record(3, "FAIL"))
        assert writer.flush(20)
        stats = log.stop_writer()
        assert (stats.committed, stats.lost) == (3, 0)
        worst = log.page(sort=SortKey.SCORE, descending=True, limit=1).rows[0]
        assert worst.frame_id == 2 and worst.verdict == Decision.FAIL
        assert worst.score == math.inf                 # NaN is stored as +inf, documented
        assert "NaN" in worst.reason and worst.picture_state == PictureState.OK
        ordinary = {r.frame_id: r for r in log.page(limit=3).rows}
        assert ordinary[1].reason is None and ordinary[3].reason is None
        log.export_csv(InspectionFilter(), tmp_path / "out.csv")
        assert "NaN" in (tmp_path / "out.csv").read_text()
    assert not [e for e in events if e.kind == "lost"]


def test_a_v2_log_is_upgraded_with_a_reason_column(log_place):
    url, _ = resolve(log_place.location, log_place.pictures_dir)
    engine = make_engine(url)
    migrate(engine, target=2)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO inspections (t_us, station, camera, product, model_id, "
                          "score, threshold, verdict) VALUES (1, 's', 'c', 'P', 'm', 0.1, 0.5, 'PASS')"))
    engine.dispose()
    with log_place.open() as log:
        assert log.schema_upgraded_from == 2
        assert log.page().rows[0].reason is None
        writer = log.start_writer()
        writer.submit(_nan_record(5))
        assert writer.flush(20)
        assert log.count() == 2 and "NaN" in log.page(InspectionFilter(verdicts=("FAIL",))).rows[0].reason


# ---- a PostgreSQL server stopped mid-run ---------------------------------------------



@pytest.fixture
def own_pg():
    server = RestartableServer()
    server.start()
    if not server.url:
        pytest.skip(f"no PostgreSQL server: {server.skip_reason}")
    yield server
    server.stop()


def _run_line(writer, seconds: float, start: int, rate: float = 50.0) -> int:
    """Submit at `rate` for `seconds` (a FAIL with a picture every fifth); returns the next id."""
    i, t0 = start, time.monotonic()
    while time.monotonic() - t0 < seconds:
        fail = i % 5 == 0
        writer.submit(make_record(i, "FAIL" if fail else "PASS", image=picture(i) if fail else None))
        i += 1
        time.sleep(max(0.0, t0 + (i - start) / rate - time.monotonic()))
    return i


def _wait(cond, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


def test_server_stopped_mid_run_spools_and_merges_when_it_returns(own_pg, tmp_path):
    url = own_pg.new_database()
    cfg = LogConfig(pictures_dir=tmp_path / "pictures", on_db_failure="spool", db_retry_max_s=0.5,
                    warn_free_mb=1, reserve_free_mb=0)
    events = []
    log = InspectionLog.open(url, cfg, events.append)
    writer = log.start_writer()
    n = _run_line(writer, 1.0, 0)
    own_pg.pause()                                    # the server goes away mid-run
    n = _run_line(writer, 2.0, n)
    during = writer.stats()
    assert writer.problem() is None                   # spooling: the line may run on
    assert during.spooled > 0 and not during.db_ok
    own_pg.resume()
    n = _run_line(writer, 1.0, n)
    assert writer.flush(30)
    after = writer.stats()
    rows = log.count()
    print(f"\nPostgreSQL stopped mid-run (spool): judged {n}, committed {rows}, spooled while "
          f"down {during.spooled}, lost {n - rows}")
    assert rows == n and after.spooled == 0 and after.lost == 0
    assert any(e.kind == "spooling" for e in events) and any(e.kind == "db_recovered" for e in events)
    with log.engine.connect() as conn:
        assert conn.execute(select(func.count(inspections.c.frame_id.distinct()))).scalar_one() == n
    fails = log.page(InspectionFilter(verdicts=("FAIL",)), limit=500).rows
    assert len(fails) == (n + 4) // 5 and {r.picture_state for r in fails} == {PictureState.OK}

    # The server is down when the app closes, and still down when it starts again: the app
    # opens offline, spools, and writes everything once the server answers.
    own_pg.pause()
    n = _run_line(writer, 0.5, n)
    stats = log.stop_writer(timeout=2)
    log.close()
    assert stats.deferred > 0
    log = InspectionLog.open(url, cfg, events.append)
    try:
        assert not log.online
        writer = log.start_writer()
        n = _run_line(writer, 0.5, n)
        assert writer.problem() is None
        own_pg.resume()
        assert writer.flush(30)
        total = log.count()
        print(f"PostgreSQL down at close and at the next start (spool): judged {n}, committed "
              f"{total}, lost {n - total}")
        assert total == n
    finally:
        log.close()


def test_server_stopped_mid_run_stops_the_line_within_the_bound(own_pg, tmp_path):
    url = own_pg.new_database()
    cfg = LogConfig(pictures_dir=tmp_path / "pictures", db_stop_after_s=2.0, db_retry_max_s=0.5,
                    warn_free_mb=1, reserve_free_mb=0)
    with InspectionLog.open(url, cfg) as log:
        writer = log.start_writer()
        n = _run_line(writer, 0.5, 0)
        assert writer.flush(10) and writer.problem() is None
        own_pg.pause()
        t0 = time.monotonic()
        while writer.problem() is None and time.monotonic() - t0 < 15:   # the line judges on
            n = _run_line(writer, 0.1, n)
        took = time.monotonic() - t0
        problem = writer.problem()
        print(f"\nPostgreSQL stopped mid-run (stop): the writer asked to stop the line after "
              f"{took:.1f} s ({n} judged): {problem}")
        assert problem and "inspection is stopped" in problem
        assert took < cfg.db_stop_after_s + 6          # bounded: the stop time + one retry
        own_pg.resume()
        assert _wait(lambda: writer.problem() is None, 30)
        assert writer.flush(30)
        assert log.count() == n                       # nothing judged was lost


def test_a_journal_left_for_another_log_is_moved_aside_not_replayed(tmp_path):
    from engine.log.journal import Journal
    from engine.log.writer import make_row
    pictures = tmp_path / "pictures"
    cfg = LogConfig(pictures_dir=pictures, warn_free_mb=1, reserve_free_mb=0)
    with InspectionLog.open(tmp_path / "a" / "log.db", cfg) as first:
        url_a = first.url
    journal, _ = Journal.open(pictures, url_a)        # a verdict log A never got (a crash)
    journal.append({"s": journal.next_seq(), "u": "0123456789abcdef", "p": 0,
                    "r": make_row(make_record(1), None)})
    journal.close(checkpoint=0)
    events = []
    with InspectionLog.open(tmp_path / "b" / "log.db", cfg, events.append) as second:
        assert second.count() == 0                    # not replayed into the wrong log
        moved = [e for e in events if e.kind == "journal_moved"]
        assert moved and Path(moved[0].details["folder"]).is_dir()
    with InspectionLog.open(tmp_path / "a" / "log.db", cfg) as first:
        assert first.count() == 0                     # kept aside for a person to look at
