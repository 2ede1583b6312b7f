"""Schema v4: each row names the app version that judged it and the part's id; the audit
trail is appended through the writer (journal first) or directly, and is never lost."""
import time

import pytest
from sqlalchemy import text

from engine.log import AuditEntry, InspectionRecord
from engine.log.database import make_engine, resolve
from engine.log.migrations import migrate
from engine.log.registry import audit_row
from engine.version import APP_VERSION, _from_pyproject

try:
    from pg_server import log_place, make_record, pg_server  # noqa: F401
except ImportError:
    from tests.pg_server import log_place, make_record, pg_server  # noqa: F401


def _with_part(record: InspectionRecord, part_id: str | None) -> InspectionRecord:
    return InspectionRecord(verdict=record.verdict, wall_time=record.wall_time,
                            station=record.station, camera=record.camera,
                            product=record.product, part_id=part_id)


def test_app_version_is_the_package_version():
    assert APP_VERSION and APP_VERSION == _from_pyproject()


def test_rows_carry_the_part_id_and_the_app_version(log_place):
    with log_place.open() as log:
        writer = log.start_writer()
        writer.submit(_with_part(make_record(1, "FAIL"), "PLC-000123"))
        writer.submit(_with_part(make_record(2, "PASS"), "x" * 100))   # clipped, not lost
        writer.submit(make_record(3, "PASS"))
        assert writer.flush(20)
        rows = {r.frame_id: r for r in log.page().rows}
        assert rows[1].part_id == "PLC-000123" and rows[3].part_id is None
        assert rows[2].part_id == "x" * 64
        assert {r.app_version for r in rows.values()} == {APP_VERSION}


def test_audit_rows_through_the_writer_and_without_it(log_place):
    with log_place.open() as log:
        log.append_audit(AuditEntry("anna", "engineer", "threshold", "A", "0.4", "0.5"))
        writer = log.start_writer()
        writer.submit(make_record(1, "FAIL"))
        log.append_audit(AuditEntry("ben", "admin", "user", "carl", None, '{"role": "operator"}',
                                    detail="added"))
        assert writer.flush(20)
        got = log.audit()
        assert [(a.who, a.kind, a.old, a.new) for a in got] == [
            ("anna", "threshold", "0.4", "0.5"), ("ben", "user", None, '{"role": "operator"}')]
        assert got[1].detail == "added" and got[0].t_us <= got[1].t_us
        stats = log.stop_writer()
        assert stats.committed == 1                     # audit rows are not verdicts
        assert [a.who for a in log.audit(kind="user")] == ["ben"]
        assert log.audit(since_us=got[1].t_us + 1) == []


def test_an_audit_row_left_in_the_journal_is_written_once_at_the_next_start(log_place):
    entry = AuditEntry("anna", "engineer", "model", "A", "m1", "m2", t_us=int(time.time() * 1e6))
    log = log_place.open()
    seq = log.journal.next_seq()
    log.journal.append({"s": seq, "a": audit_row(entry)})     # as the writer journals it
    log.close()                                               # never committed: a "kill"
    with log_place.open() as log:
        assert log.recovered.audit == 1 and log.recovered.rows == 0
        assert [(a.who, a.old, a.new) for a in log.audit()] == [("anna", "m1", "m2")]
        assert log.journal.last_seq >= seq                    # its number is never reused
        writer = log.start_writer()
        writer.submit(make_record(1))
        assert writer.flush(20)
    with log_place.open() as log:
        assert len(log.audit()) == 1 and log.count() == 1


def test_an_audit_kind_outside_the_vocabulary_is_refused():
    with pytest.raises(ValueError, match="audit kind"):
        AuditEntry("anna", "engineer", "coffee", "A")


def test_a_v3_log_is_upgraded_to_v4(log_place):
    url, _ = resolve(log_place.location, log_place.pictures_dir)
    engine = make_engine(url)
    assert migrate(engine, target=3) == (0, 3)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO inspections (t_us, station, camera, product, model_id, "
                          "score, threshold, verdict) VALUES (1, 's', 'c', 'P', 'm', 0.9, 0.5, "
                          "'FAIL')"))
    engine.dispose()
    with log_place.open() as log:
        assert log.schema_upgraded_from == 3
        row = log.page().rows[0]
        assert row.part_id is None and row.app_version is None and row.score == 0.9
        log.append_audit(AuditEntry("anna", "engineer", "settings", "storage"))
        assert len(log.audit()) == 1
