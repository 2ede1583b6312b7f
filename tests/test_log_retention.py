"""Retention deletes pictures by age or total size, keeps every row, and runs by itself."""
import time

from engine.log import InspectionFilter, PictureState, RetentionPolicy

try:
    from pg_server import log_place, make_record, pg_server, picture  # noqa: F401
except ImportError:
    from tests.pg_server import log_place, make_record, pg_server, picture  # noqa: F401

DAY = 86400


def _fill(log, ages_days):
    writer = log.start_writer()
    now = time.time()
    for i, age in enumerate(ages_days):
        writer.submit(make_record(i, "FAIL", t=now - age * DAY, image=picture(i), overlay=picture(i)))
    assert writer.flush(20)
    log.stop_writer()
    return {r.frame_id: r for r in log.page(limit=100).rows}


def test_keep_days_purges_old_pictures_and_keeps_rows(log_place):
    cfg = log_place.config(retention=RetentionPolicy(keep_days=7))
    with log_place.open(cfg) as log:
        before = _fill(log, [30, 20, 10, 3, 1, 0])
        old_bytes = sum(before[i].image_path.stat().st_size + before[i].overlay_path.stat().st_size
                        for i in (0, 1, 2))
        result = log.apply_retention()
        assert result.pictures_purged == 3 and result.bytes_freed == old_bytes
        after = {r.frame_id: r for r in log.page(limit=100).rows}
        assert len(after) == 6                                  # rows are kept
        for i in (0, 1, 2):
            assert after[i].picture_state == PictureState.PURGED
            assert not before[i].image_path.exists() and not before[i].overlay_path.exists()
            assert not before[i].image_path.parent.exists()      # empty dated folders go too
        for i in (3, 4, 5):
            assert after[i].picture_state == PictureState.OK and after[i].image_path.exists()
        assert log.apply_retention().pictures_purged == 0       # idempotent


def test_keep_gb_removes_oldest_pictures_first(log_place):
    with log_place.open() as log:
        rows = _fill(log, [5, 4, 3, 2, 1, 0])
        sizes = {i: r.image_path.stat().st_size + r.overlay_path.stat().st_size for i, r in rows.items()}
        keep_bytes = sizes[4] + sizes[5] + 10
        cfg = log_place.config(retention=RetentionPolicy(keep_gb=keep_bytes / 1e9, chunk=2))
    with log_place.open(cfg) as log:
        result = log.apply_retention()
        assert result.pictures_purged == 4
        assert result.bytes_freed == sum(sizes[i] for i in range(4))
        states = {r.frame_id: r.picture_state for r in log.page(limit=100).rows}
        assert states == {0: PictureState.PURGED, 1: PictureState.PURGED, 2: PictureState.PURGED,
                          3: PictureState.PURGED, 4: PictureState.OK, 5: PictureState.OK}
        assert log.count(InspectionFilter()) == 6


def test_retention_runs_in_the_background(log_place):
    with log_place.open() as log:
        rows = _fill(log, [40, 0])
    events = []
    cfg = log_place.config(retention=RetentionPolicy(keep_days=30, interval_s=0.1))
    with log_place.open(cfg, events.append) as log:
        log.start_writer()
        deadline = time.time() + 10
        while not any(e.kind == "retention" for e in events) and time.time() < deadline:
            time.sleep(0.05)
        log.stop_writer()
        [event] = [e for e in events if e.kind == "retention"]
        assert event.details["pictures_purged"] == 1
        assert not rows[0].image_path.exists() and rows[1].image_path.exists()
