"""The startup check finds orphans both ways and repairs what it can."""
import time

import pytest
from sqlalchemy import update

from engine.errors import InspectError
from engine.log import InspectionFilter, InspectionLog, PictureState, RetentionPolicy
from engine.log.pictures import picture_names
from engine.log.schema import inspections

try:
    from pg_server import log_place, make_record, pg_server, picture  # noqa: F401
except ImportError:
    from tests.pg_server import log_place, make_record, pg_server, picture  # noqa: F401


def _fill(log, n):
    writer = log.start_writer()
    for i in range(n):
        writer.submit(make_record(i, "FAIL", image=picture(i), overlay=picture(i + 9)))
    assert writer.flush(20)
    log.stop_writer()
    return {r.frame_id: r for r in log.page(limit=100).rows}


def test_orphans_both_ways_are_found_and_repaired(log_place):
    with log_place.open() as log:
        rows = _fill(log, 6)
        store = log.pictures
        now_us = int(time.time() * 1e6)
        # 1. a finished picture whose row never committed (crash between rename and commit)
        meta = dict(t_us=now_us, station="st9", camera="cam9", product="Q", model_id="m9",
                    frame_id=999, score=0.97, threshold=0.8, verdict="FAIL", latency_ms=4.0)
        saved = store.save(picture(99), picture(98), picture_names(now_us, "st9", "feedbeef"),
                           meta, True, 64, 80)
        # 2. an unfinished temporary file, 3. an overlay nothing points to
        tmp = store.path(saved.image_rel).with_name("x.png.tmp")
        tmp.write_bytes(b"half")
        stray = store.path(saved.image_rel).with_name("stray_overlay.jpg")
        stray.write_bytes(b"\xff\xd8")
        # 4. a row whose picture vanished, 5. a row whose picture was cut short
        rows[0].image_path.unlink()
        rows[1].image_path.write_bytes(rows[1].image_path.read_bytes()[:100])
        # 6. a picture retention had marked purged but not yet deleted
        with log.engine.begin() as conn:
            conn.execute(update(inspections).where(inspections.c.id == rows[2].id)
                         .values(picture_state=PictureState.PURGED.value))

        report = log.check_pictures(repair=False)           # look first: nothing changes
        assert (report.rows_missing, report.rows_rebuilt, report.temp_files,
                report.orphans_deleted, report.purged_leftovers) == (2, 1, 1, 1, 2)
        assert tmp.exists() and stray.exists() and not report.repaired
        assert log.count(InspectionFilter(products=("Q",))) == 0

    events = []
    with log_place.open(on_event=events.append) as log:    # a restart repairs
        check = log.startup_check
        assert (check.rows_rebuilt, check.rows_missing, check.temp_files,
                check.orphans_deleted, check.purged_leftovers) == (1, 2, 1, 1, 2)
        assert check.repaired
        assert not tmp.exists() and not stray.exists()
        assert not rows[2].image_path.exists() and not rows[2].overlay_path.exists()
        [rebuilt] = log.page(InspectionFilter(products=("Q",))).rows
        assert (rebuilt.frame_id, rebuilt.score, rebuilt.station, rebuilt.camera) == (999, 0.97, "st9", "cam9")
        assert rebuilt.overlay_path.name.endswith("_overlay.jpg") and rebuilt.overlay_path.exists()
        assert rebuilt.picture_state == PictureState.OK
        states = {r.frame_id: r.picture_state for r in log.page(limit=100).rows}
        assert states[0] == states[1] == PictureState.MISSING
        assert states[3] == PictureState.OK
        [event] = [e for e in events if e.kind == "pictures_checked"]
        assert event.level == "warning" and event.details["rows_rebuilt"] == 1
        assert log.check_pictures().problems == 0           # nothing left to repair


def test_startup_window_skips_old_folders(log_place):
    with log_place.open() as log:
        old_us = int((time.time() - 10 * 86400) * 1e6)
        names = picture_names(old_us, "st1", "0123abcd")
        log.pictures.save(picture(1), None, names, dict(
            t_us=old_us, station="st1", camera="c", product="P", model_id="m", frame_id=1,
            score=0.9, threshold=0.5, verdict="FAIL", latency_ms=1.0), True, 64, 80)
    with log_place.open(log_place.config(startup_check_hours=48)) as log:
        assert log.startup_check.files_checked == 0 and log.count() == 0
        assert log.check_pictures(since_hours=None).rows_rebuilt == 1   # a full check finds it
        assert log.count() == 1


def test_check_refuses_while_the_writer_runs(log_place):
    with log_place.open() as log:
        log.start_writer()
        with pytest.raises(RuntimeError):
            log.check_pictures()


def test_one_writer_per_pictures_folder(log_place):
    import os
    from engine.log import LogInUse
    with log_place.open() as first:
        first.start_writer()
        with pytest.raises(LogInUse, match=f"in use by process {os.getpid()} on "):
            log_place.open()
        # beside the writer, a read-only log reads (History) but neither writes nor judges
        # its pictures: the newest ones may not be committed yet
        with InspectionLog.open(log_place.location, log_place.config(), read_only=True) as second:
            assert second.count() == 0
            assert "read-only" in second.check_pictures().skipped
            with pytest.raises(InspectError, match="read-only"):
                second.start_writer()
    with log_place.open() as second:           # the first closed: the folder is free
        second.start_writer()


def test_shared_server_log_judges_only_its_own_stations(log_place, tmp_path):
    """Two line PCs, one database, each with its own pictures folder."""
    line_a = log_place.config(pictures_dir=tmp_path / "pc-a", stations=("A",),
                              retention=RetentionPolicy(keep_gb=0))       # keeps no pictures
    line_b = log_place.config(pictures_dir=tmp_path / "pc-b", stations=("B",))
    with log_place.open(line_b) as log:
        writer = log.start_writer()
        for i in range(3):
            writer.submit(make_record(i, "FAIL", station="B", image=picture(i)))
        assert writer.flush(20)
    with log_place.open(line_a) as log:                     # PC A starts: B's rows are not its business
        assert log.startup_check.rows_missing == 0 and log.startup_check.rows_checked == 0
        assert log.apply_retention().pictures_purged == 0    # ...and B's pictures are not A's to purge
        assert {r.picture_state for r in log.page().rows} == {PictureState.OK}
    with log_place.open(line_b) as log:
        assert log.startup_check.rows_checked == 3 and log.startup_check.problems == 0
