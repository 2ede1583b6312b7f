"""The current layout of the log's tables (schema version 3), for queries and the writer.

The tables are *created* by the steps in migrations.py, never from this file, so a new log
and an upgraded old one go through the same code; a test checks both match this file.
Times are integer microseconds since the epoch, UTC: exact, sortable, and bucketed the
same way by SQLite and PostgreSQL.
"""
from __future__ import annotations

from sqlalchemy import (BigInteger, Column, Float, Index, Integer, MetaData, String, Table,
                        Text)

SCHEMA_VERSION = 3

# SQLite auto-numbers only an INTEGER PRIMARY KEY (the rowid); BIGINT elsewhere.
RowId = BigInteger().with_variant(Integer(), "sqlite")

metadata = MetaData()

log_meta = Table(
    "log_meta", metadata,
    Column("key", String(64), primary_key=True),
    Column("value", String(256), nullable=False),
)

inspections = Table(
    "inspections", metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
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
    Column("image_path", String(255)),         # relative to the pictures folder
    Column("overlay_path", String(255)),
    Column("picture_bytes", BigInteger),       # both files together, for the GB retention rule
    Column("label", String(16)),
    Column("note", Text),
    # v2
    Column("picture_state", String(10)),
    Column("labeled_by", String(64)),
    Column("labeled_at_us", BigInteger),
    # v3: why a decision is not the plain score comparison (a non-finite score: FAIL, with
    # the score stored as +inf because SQLite cannot keep NaN in a NOT NULL column)
    Column("reason", Text),
)

# Every history-view index ends in id: keyset paging orders by (key, id).
INSPECTION_INDEXES = (
    Index("ix_inspections_t", inspections.c.t_us, inspections.c.id),
    Index("ix_inspections_verdict_t", inspections.c.verdict, inspections.c.t_us, inspections.c.id),
    Index("ix_inspections_product_t", inspections.c.product, inspections.c.t_us, inspections.c.id),
    Index("ix_inspections_label_t", inspections.c.label, inspections.c.t_us, inspections.c.id),
    Index("ix_inspections_score", inspections.c.score, inspections.c.id),
    Index("ix_inspections_pictures", inspections.c.picture_state, inspections.c.t_us),   # v2
)

models = Table(
    "models", metadata,
    Column("model_id", String(64), primary_key=True),
    Column("name", String(128), nullable=False),
    Column("product", String(64), nullable=False),
    Column("created_us", BigInteger, nullable=False),
    Column("path", String(1024), nullable=False),
    Column("threshold", Float, nullable=False),
    Column("metrics", Text, nullable=False),      # JSON object
    Column("notes", Text, nullable=False),
)

threshold_changes = Table(
    "threshold_changes", metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    Column("t_us", BigInteger, nullable=False),
    Column("who", String(64), nullable=False),
    Column("product", String(64), nullable=False),
    Column("model_id", String(64), nullable=False),
    Column("old_threshold", Float),
    Column("new_threshold", Float, nullable=False),
    Column("reason", Text, nullable=False),
    Index("ix_threshold_changes_product_t", "product", "t_us"),
)

# v2: verdicts the writer could not queue (queue full, database down) are still counted,
# per hour, so part counts and yield stay true.
unlogged_counts = Table(
    "unlogged_counts", metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    Column("hour_us", BigInteger, nullable=False),   # start of the UTC hour
    Column("station", String(64), nullable=False),
    Column("camera", String(128), nullable=False),
    Column("product", String(64), nullable=False),
    Column("verdict", String(8), nullable=False),
    Column("n", BigInteger, nullable=False),
    Column("reason", String(32), nullable=False),
    Index("ix_unlogged_counts_hour", "hour_us"),
)
