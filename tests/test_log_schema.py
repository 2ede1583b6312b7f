"""Schema version and migrations: a new log, an older log upgraded, a newer log refused."""
import sqlite3
import time
from pathlib import Path

import pytest
from sqlalchemy import inspect, select, text

from engine.errors import InspectError
from engine.log import SCHEMA_VERSION, InspectionFilter, InspectionLog, LogConfig, PictureState
from engine.log.database import make_engine, resolve
from engine.log.migrations import migrate, read_version
from engine.log.schema import inspections, log_meta, metadata

try:
    from pg_server import log_place, pg_server  # noqa: F401  (fixtures)
except ImportError:
    from tests.pg_server import log_place, pg_server  # noqa: F401


def _columns(engine):
    insp = inspect(engine)
    return {t: {c["name"] for c in insp.get_columns(t)} for t in insp.get_table_names()}


def test_new_log_matches_the_declared_schema(log_place):
    with log_place.open() as log:
        with log.engine.connect() as conn:
            assert read_version(conn) == SCHEMA_VERSION
        found = _columns(log.engine)
        declared = {t.name: {c.name for c in t.columns} for t in metadata.sorted_tables}
        assert found == declared
        indexes = {i["name"] for i in inspect(log.engine).get_indexes("inspections")}
        assert {i.name for i in inspections.indexes} <= indexes


def test_older_log_is_upgraded_and_keeps_its_rows(log_place):
    url, pictures = resolve(log_place.location, log_place.pictures_dir)
    engine = make_engine(url)
    assert migrate(engine, target=1) == (0, 1)
    ten_days_ago = int((time.time() - 10 * 86400) * 1e6)   # outside the startup picture check
    v1_row = dict(t_us=ten_days_ago, station="s", camera="c", product="P", model_id="m",
                  frame_id=1, score=0.9, threshold=0.5, verdict="FAIL", latency_ms=1.0,
                  overlay_path=None, picture_bytes=10, note=None)
    with engine.begin() as conn:
        # v1 had no picture_state/labeled_by: insert through the v1 columns only.
        conn.execute(text("INSERT INTO inspections (t_us, station, camera, product, model_id, "
                          "frame_id, score, threshold, verdict, latency_ms, image_path, "
                          "overlay_path, picture_bytes, label, note) VALUES (:t_us, :station, "
                          ":camera, :product, :model_id, :frame_id, :score, :threshold, :verdict, "
                          ":latency_ms, :image_path, :overlay_path, :picture_bytes, :label, :note)"),
                     [dict(v1_row, image_path="2020/01/01/00/x.png", label="confirmed_defect"),
                      dict(v1_row, image_path=None, verdict="PASS", score=0.1, label=None,
                           picture_bytes=None)])
    assert "picture_state" not in _columns(engine)["inspections"]
    engine.dispose()

    events = []
    with log_place.open(on_event=events.append) as log:
        assert log.schema_upgraded_from == 1
        assert any(e.kind == "schema_upgraded" for e in events)
        rows = {r.verdict.value: r for r in log.page().rows}
        assert rows["FAIL"].picture_state == PictureState.OK      # backfilled by the v2 step
        assert rows["FAIL"].label.value == "confirmed_defect"
        assert rows["PASS"].picture_state is None
        assert log.count(InspectionFilter(labels=("confirmed_defect",))) == 1
        assert log.unlogged() == 0                                # the v2 table exists


def test_log_from_a_newer_app_is_refused(log_place):
    with log_place.open() as log:
        with log.engine.begin() as conn:
            conn.execute(log_meta.update().where(log_meta.c.key == "schema_version")
                         .values(value=str(SCHEMA_VERSION + 1)))
    with pytest.raises(InspectError, match="newer version"):
        log_place.open()


def test_opening_twice_is_harmless(log_place):
    log_place.open().close()
    with log_place.open() as log:
        assert log.schema_upgraded_from is None
        with log.engine.connect() as conn:
            version = select(log_meta.c.value).where(log_meta.c.key == "schema_version")
            assert conn.execute(version).scalars().all() == [str(SCHEMA_VERSION)]
            keys = conn.execute(select(log_meta.c.key)).scalars().all()
            assert len([k for k in keys if k.startswith("journal:")]) == 1   # one checkpoint


def test_sqlite_log_runs_in_wal_mode(tmp_path):
    with InspectionLog.open(tmp_path / "log") as log:
        with log.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert log.pictures.root == (tmp_path / "log" / "pictures").resolve()
        assert (tmp_path / "log" / "inspections.sqlite3").exists()


def test_an_unreachable_server_is_a_clear_error(tmp_path):
    with pytest.raises(InspectError, match="Cannot open the inspection log"):
        InspectionLog.open("postgresql://nobody@127.0.0.1:1/none",
                           LogConfig(pictures_dir=tmp_path / "p"))


def test_a_foreign_database_is_refused(tmp_path):
    db = tmp_path / "other.sqlite3"
    sqlite3.connect(db).execute("CREATE TABLE invoices (id INTEGER)").connection.commit()
    with pytest.raises(InspectError, match="not an inspection log"):
        InspectionLog.open(db)


def test_locations_resolve(tmp_path):
    url, pictures = resolve("postgresql://qa@plant-db/line3", tmp_path / "share")
    assert url.drivername == "postgresql+psycopg" and pictures == tmp_path / "share"
    with pytest.raises(InspectError, match="pictures folder"):
        resolve("postgresql://qa@plant-db/line3", None)
    with pytest.raises(InspectError, match="in-memory"):
        resolve("sqlite://", None)
    url, pictures = resolve(tmp_path / "x" / "log.db", None)
    assert Path(url.database).name == "log.db" and pictures == (tmp_path / "x" / "pictures").resolve()
    with pytest.raises(ValueError):
        LogConfig(png_mode="zip")
