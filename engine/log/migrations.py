"""Versioned steps from an empty database to the current schema.

Each step is frozen once released: it describes what that version *was*, so it must never
change. A new log runs every step; an older log runs the steps it lacks, in one
transaction (PostgreSQL and, with our BEGIN hook, SQLite both have transactional DDL),
so a failed upgrade leaves the old log as it was. A log from a newer app is refused.
"""
from __future__ import annotations

from typing import Callable

from sqlalchemy import (BigInteger, Column, Connection, Engine, Float, Index, Integer,
                        MetaData, String, Table, Text, inspect, select, text)

from engine.errors import InspectError
from engine.log.schema import SCHEMA_VERSION, log_meta

_ADVISORY_LOCK = 0x1F5EC7   # serialises upgrades when several line PCs open one server log


def _v1(conn: Connection) -> None:
    """The first layout: inspections, models, threshold changes, meta."""
    md = MetaData()
    row_id = BigInteger().with_variant(Integer(), "sqlite")
    Table("log_meta", md,
          Column("key", String(64), primary_key=True),
          Column("value", String(256), nullable=False))
    t = Table("inspections", md,
              Column("id", row_id, primary_key=True, autoincrement=True),
              Column("t_us", BigInteger, nullable=False),
              Column("station", String(64), nullable=False),
              Column("camera", String(128), nullable=False),
              Column("product", String(64), nullable=False),
              Column("model_id", String(64), nullable=False),
              Column("frame_id", BigInteger),
              Column("score", Float, nullable=False),
              Column("threshold", Float, nullable=False),
              Column("verdict", String(8), nullable=False),
              Column("latency_ms", Float),
              Column("image_path", String(255)),
              Column("overlay_path", String(255)),
              Column("picture_bytes", BigInteger),
              Column("label", String(16)),
              Column("note", Text))
    Index("ix_inspections_t", t.c.t_us, t.c.id)
    Index("ix_inspections_verdict_t", t.c.verdict, t.c.t_us, t.c.id)
    Index("ix_inspections_product_t", t.c.product, t.c.t_us, t.c.id)
    Index("ix_inspections_label_t", t.c.label, t.c.t_us, t.c.id)
    Index("ix_inspections_score", t.c.score, t.c.id)
    Table("models", md,
          Column("model_id", String(64), primary_key=True),
          Column("name", String(128), nullable=False),
          Column("product", String(64), nullable=False),
          Column("created_us", BigInteger, nullable=False),
          Column("path", String(1024), nullable=False),
          Column("threshold", Float, nullable=False),
          Column("metrics", Text, nullable=False),
          Column("notes", Text, nullable=False))
    tc = Table("threshold_changes", md,
               Column("id", row_id, primary_key=True, autoincrement=True),
               Column("t_us", BigInteger, nullable=False),
               Column("who", String(64), nullable=False),
               Column("product", String(64), nullable=False),
               Column("model_id", String(64), nullable=False),
               Column("old_threshold", Float),
               Column("new_threshold", Float, nullable=False),
               Column("reason", Text, nullable=False))
    Index("ix_threshold_changes_product_t", tc.c.product, tc.c.t_us)
    md.create_all(conn)


def _v2(conn: Connection) -> None:
    """Picture state (retention, crash repair), who labelled and when, counts of unlogged verdicts."""
    for ddl in ("ALTER TABLE inspections ADD COLUMN picture_state VARCHAR(10)",
                "ALTER TABLE inspections ADD COLUMN labeled_by VARCHAR(64)",
                "ALTER TABLE inspections ADD COLUMN labeled_at_us BIGINT",
                "UPDATE inspections SET picture_state = 'ok' WHERE image_path IS NOT NULL",
                "CREATE INDEX ix_inspections_pictures ON inspections (picture_state, t_us)"):
        conn.execute(text(ddl))
    md = MetaData()
    uc = Table("unlogged_counts", md,
               Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True,
                      autoincrement=True),
               Column("hour_us", BigInteger, nullable=False),
               Column("station", String(64), nullable=False),
               Column("camera", String(128), nullable=False),
               Column("product", String(64), nullable=False),
               Column("verdict", String(8), nullable=False),
               Column("n", BigInteger, nullable=False),
               Column("reason", String(32), nullable=False))
    Index("ix_unlogged_counts_hour", uc.c.hour_us)
    md.create_all(conn)


def _v3(conn: Connection) -> None:
    """Why a decision is what it is (a non-finite score is a FAIL and says so)."""
    conn.execute(text("ALTER TABLE inspections ADD COLUMN reason TEXT"))


def _v4(conn: Connection) -> None:
    """The part id and the judging app's version on each row; the append-only audit table."""
    conn.execute(text("ALTER TABLE inspections ADD COLUMN part_id VARCHAR(64)"))
    conn.execute(text("ALTER TABLE inspections ADD COLUMN app_version VARCHAR(32)"))
    md = MetaData()
    a = Table("audit", md,
              Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True,
                     autoincrement=True),
              Column("t_us", BigInteger, nullable=False),
              Column("who", String(64), nullable=False),
              Column("role", String(16), nullable=False),
              Column("kind", String(32), nullable=False),
              Column("target", String(128), nullable=False),
              Column("old", Text),
              Column("new", Text),
              Column("detail", Text))
    Index("ix_audit_t", a.c.t_us, a.c.id)
    md.create_all(conn)


# version -> the step that produces it from the version before
STEPS: dict[int, Callable[[Connection], None]] = {1: _v1, 2: _v2, 3: _v3, 4: _v4}
assert max(STEPS) == SCHEMA_VERSION, "schema.py and migrations.py disagree on the version"


def read_version(conn: Connection) -> int:
    """0 for an empty database; raises for a database that is not an inspection log."""
    tables = set(inspect(conn).get_table_names())
    if "log_meta" not in tables:
        if tables:
            raise InspectError(f"This database is not an inspection log (it has tables "
                               f"{', '.join(sorted(tables)[:5])} but no log_meta). Choose another.")
        return 0
    value = conn.execute(select(log_meta.c.value).where(log_meta.c.key == "schema_version")).scalar()
    return int(value or 0)


def _write_version(conn: Connection, version: int) -> None:
    updated = conn.execute(log_meta.update().where(log_meta.c.key == "schema_version")
                           .values(value=str(version))).rowcount
    if not updated:
        conn.execute(log_meta.insert().values(key="schema_version", value=str(version)))


def migrate(engine: Engine, target: int = SCHEMA_VERSION) -> tuple[int, int]:
    """Bring the log to `target`; returns (version found, version now)."""
    with engine.connect().execution_options(sqlite_begin="IMMEDIATE") as conn:
        with conn.begin():
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _ADVISORY_LOCK})
            found = read_version(conn)
            if found > SCHEMA_VERSION:
                raise InspectError(
                    f"This log was written by a newer version of the app (schema v{found}); this "
                    f"app reads up to v{SCHEMA_VERSION}. Update the app to open it.")
            for version in range(found + 1, target + 1):
                STEPS[version](conn)
                _write_version(conn, version)
    return found, max(found, target)
