"""The writer thread: rows and pictures land, the queue never blocks scoring, verdicts are
never silently dropped, a failing database is retried, the GUI reads while it writes."""
import sqlite3
import threading
import time

import cv2
import numpy as np
import pytest

from engine.log import InspectionFilter, LogConfig, PictureState
from engine.log.png import read_png_metadata

try:
    from pg_server import log_place, make_record, pg_server, picture  # noqa: F401
except ImportError:
    from tests.pg_server import log_place, make_record, pg_server, picture  # noqa: F401


def _read_rgb(path):
    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)[..., ::-1]


def test_rows_and_pictures_round_trip(log_place):
    events = []
    cfg = log_place.config(keep_pass_every=2, overlay_max_side=32)
    with log_place.open(cfg, events.append) as log:
        writer = log.start_writer()
        image, overlay = picture(1, 60, 80), picture(2, 60, 80)
        t0 = time.time()
        writer.submit(make_record(1, "FAIL", t=t0, image=image, overlay=overlay, station="Linie 3/A"))
        writer.submit(make_record(2, "REVIEW", t=t0 + 1, image=image))
        for i in range(3, 7):                        # PASS: every 2nd picture kept, per station
            writer.submit(make_record(i, "PASS", t=t0 + i, image=image))
        writer.submit(make_record(7, "FAIL", t=t0 + 7))          # a FAIL without a picture
        assert writer.flush(20)
        rows = {r.frame_id: r for r in log.page(limit=100).rows}
        assert len(rows) == 7 and log.count() == 7
        fail = rows[1]
        assert (fail.station, fail.camera, fail.product, fail.model_id) == ("Linie 3/A", "cam1", "A", "m1")
        assert fail.verdict.value == "FAIL" and fail.threshold == 0.8 and fail.latency_ms == 3.5
        assert abs(fail.t_us - t0 * 1e6) <= 1 and fail.picture_state == PictureState.OK
        assert np.array_equal(_read_rgb(fail.image_path), image)       # lossless
        small = _read_rgb(fail.overlay_path)
        assert fail.overlay_path.suffix == ".jpg" and max(small.shape[:2]) == 32
        assert read_png_metadata(fail.image_path)["frame_id"] == 1
        # dated folder tree next to the database: YYYY/MM/DD/HH/
        assert fail.image_path.relative_to(log.pictures.root).as_posix().count("/") == 4
        assert rows[2].image_path is not None and rows[2].overlay_path is None
        assert [rows[i].image_path is not None for i in range(3, 7)] == [True, False, True, False]
        assert rows[7].image_path is None and rows[7].picture_state is None
        assert not list(log.pictures.root.rglob("*.tmp"))
        stats = log.stop_writer()
        assert (stats.submitted, stats.committed, stats.lost, stats.unlogged) == (7, 7, 0, 0)
        assert stats.pictures_saved == 4
    assert not [e for e in events if e.level == "error"]


def test_full_queue_counts_verdicts_instead_of_blocking(log_place):
    events = []
    cfg = log_place.config(queue_size=3, max_batch_delay_s=0.05)
    with log_place.open(cfg, events.append) as log:
        writer = log.start_writer()
        t0 = time.time()
        accepted, started = 0, time.perf_counter()
        for i in range(400):
            accepted += writer.submit(make_record(i, "FAIL" if i % 4 == 0 else "PASS", t=t0,
                                                  image=picture(i) if i % 4 == 0 else None))
        submit_s = time.perf_counter() - started
        assert writer.flush(30)
        stats = log.stop_writer()
        assert stats.unlogged == 400 - accepted > 0
        assert submit_s < 2.0                       # scoring never waited for the disk
        assert log.count() == accepted
        assert log.unlogged() == stats.unlogged
        hour = log.summary(InspectionFilter(start=t0 - 3600))
        assert sum(r.parts for r in hour) == 400   # auditors still see every part
        assert sum(r.fails for r in hour) == 100
        assert sum(r.unlogged for r in hour) == stats.unlogged
        assert any(e.kind == "queue_full" and e.level == "warning" for e in events)


def test_picture_memory_limit_drops_pictures_not_verdicts(log_place):
    events = []
    cfg = log_place.config(max_queued_picture_mb=0.03)        # about three 64x48 pictures
    with log_place.open(cfg, events.append) as log:
        writer = log.start_writer()
        for i in range(60):                 # no timeout: the scoring thread never waits
            writer.submit(make_record(i, "FAIL", image=picture(i), overlay=picture(i)))
        assert writer.flush(30)
        stats = log.stop_writer()
        assert log.count() == 60 and stats.unlogged == 0
        dropped = log.count(InspectionFilter()) - stats.pictures_saved
        assert stats.pictures_dropped == dropped > 0
        states = {r.picture_state for r in log.page(limit=100).rows}
        assert states == {PictureState.OK, PictureState.DROPPED}
        assert any(e.kind == "pictures_dropped" for e in events)


def test_a_submitter_willing_to_wait_gets_room_for_its_pictures(tmp_path):
    from engine.log import InspectionLog
    cfg = LogConfig(max_queued_picture_mb=0.03, warn_free_mb=1, reserve_free_mb=0,
                    max_batch_delay_s=0.01)
    with InspectionLog.open(tmp_path / "log", cfg) as log:
        writer = log.start_writer()
        for i in range(30):
            assert writer.submit(make_record(i, "FAIL", image=picture(i), overlay=picture(i)), timeout=10)
        assert writer.flush(30)
        stats = writer.stats()
        assert (stats.pictures_saved, stats.pictures_dropped) == (30, 0)


def test_history_reads_while_the_writer_writes(log_place):
    with log_place.open(log_place.config(batch_size=50)) as log:
        writer = log.start_writer()
        seen, errors, done = [], [], threading.Event()

        def read():
            try:
                while not done.is_set():
                    seen.append(log.count())
                    log.page(InspectionFilter(verdicts=("FAIL",)), limit=20)
            except Exception as exc:               # pragma: no cover - the failure we look for
                errors.append(exc)

        reader = threading.Thread(target=read)
        reader.start()
        for i in range(3000):
            writer.submit(make_record(i, "FAIL" if i % 7 == 0 else "PASS"), timeout=5)
        assert writer.flush(30)
        done.set()
        reader.join()
        assert not errors
        assert seen == sorted(seen) and len(seen) > 3      # never goes backwards
        assert log.count() == 3000


def test_locked_database_is_retried_until_it_recovers(tmp_path):
    events = []
    from engine.log import InspectionLog
    cfg = LogConfig(sqlite_busy_timeout_s=0.05, warn_free_mb=1, reserve_free_mb=0)
    with InspectionLog.open(tmp_path / "log", cfg, events.append) as log:
        writer = log.start_writer()
        blocker = sqlite3.connect(tmp_path / "log" / "inspections.sqlite3", isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")             # another program holds the write lock
        for i in range(50):
            writer.submit(make_record(i))
        time.sleep(1.0)
        assert log.count() == 0 and not writer.stats().db_ok
        blocker.execute("COMMIT")
        blocker.close()
        assert writer.flush(20)
        assert log.count() == 50
        kinds = [e.kind for e in events]
        assert "db_error" in kinds and "db_recovered" in kinds
        assert kinds.index("db_error") < kinds.index("db_recovered")


def test_stop_with_database_down_keeps_every_verdict_for_the_next_start(tmp_path):
    from engine.log import InspectionLog
    events = []
    cfg = LogConfig(sqlite_busy_timeout_s=0.05, warn_free_mb=1, reserve_free_mb=0)
    log = InspectionLog.open(tmp_path / "log", cfg, events.append)
    writer = log.start_writer()
    blocker = sqlite3.connect(tmp_path / "log" / "inspections.sqlite3", isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    for i in range(10):
        writer.submit(make_record(i, "FAIL" if i < 4 else "PASS", image=picture(i)))
    time.sleep(0.5)
    stats = log.stop_writer(timeout=2.0)
    blocker.execute("COMMIT")
    blocker.close()
    log.close()
    assert (stats.lost, stats.committed, stats.deferred) == (0, 0, 10)
    deferred = [e for e in events if e.kind == "deferred"]
    assert deferred and deferred[0].level == "warning" and "next start" in deferred[0].message
    # All ten wait in the journal (the 4 FAIL pictures reached the disk): the next start
    # writes every one, with its pictures, and says so.
    events.clear()
    with InspectionLog.open(tmp_path / "log", cfg, events.append) as log:
        assert log.recovered.rows == 10 and log.startup_check.rows_rebuilt == 0
        assert log.count(InspectionFilter(verdicts=("FAIL",))) == 4
        assert sorted(r.frame_id for r in log.page().rows) == list(range(10))
        fails = log.page(InspectionFilter(verdicts=("FAIL",))).rows
        assert {r.picture_state for r in fails} == {PictureState.OK}
        assert np.array_equal(_read_rgb(fails[-1].image_path), picture(fails[-1].frame_id))
        assert any(e.kind == "recovered" for e in events)
        assert not any(e.kind == "abrupt_stop" for e in events)      # it closed cleanly
    with InspectionLog.open(tmp_path / "log", cfg) as log:            # exactly once
        assert log.count() == 10 and log.recovered.rows == 0


def test_adaptive_png_goes_stored_under_a_backlog(tmp_path):
    from engine.log import InspectionLog
    cfg = LogConfig(adaptive_backlog=2, encoder_threads=1, warn_free_mb=1, reserve_free_mb=0)
    with InspectionLog.open(tmp_path / "log", cfg) as log:
        writer = log.start_writer()
        for i in range(2):                                # a calm line: compressed
            writer.submit(make_record(i, "FAIL", image=picture(i, 96, 96)))
            assert writer.flush(10)
        for i in range(2, 40):                            # a burst: stored, to keep up
            writer.submit(make_record(i, "FAIL", image=picture(i, 96, 96)), timeout=5)
        assert writer.flush(30)
        stats = writer.stats()
        assert 30 <= stats.pictures_stored <= 38
        for row in log.page(limit=40).rows:
            assert np.array_equal(_read_rgb(row.image_path), picture(row.frame_id, 96, 96))


def test_submit_needs_a_running_writer(tmp_path):
    from engine.log import InspectionLog
    with InspectionLog.open(tmp_path / "log") as log:
        with pytest.raises(RuntimeError):
            log.submit(make_record(1))
        writer = log.start_writer()
        log.stop_writer()
        with pytest.raises(RuntimeError):
            writer.submit(make_record(1))
