"""Replaying the journal into the database: what lies above the checkpoint becomes rows
(and hour counts), each exactly once, in chunks that each commit their own checkpoint.

Used when the log opens (after a kill, or a stop while the database was down) and by the
writer when a database it was spooling for answers again.
"""
from __future__ import annotations

import collections
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, insert, select
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from engine.log.journal import Journal
from engine.log.pictures import PictureStore, picture_names
from engine.log.records import PictureState
from engine.log.schema import audit, inspections, log_meta, unlogged_counts

_HOUR_US = 3_600_000_000
_CHUNK = 500


class AuditRow(dict):
    """An audit table row among a batch's inspection rows (the writer and the replay
    commit both in one transaction, in journal order)."""


def insert_rows(conn: Connection, rows: list[dict]) -> None:
    """Inspection rows and audit rows of one batch, each table in one statement."""
    verdicts = [r for r in rows if not isinstance(r, AuditRow)]
    changes = [dict(r) for r in rows if isinstance(r, AuditRow)]
    if verdicts:
        conn.execute(insert(inspections), verdicts)
    if changes:
        conn.execute(insert(audit), changes)


@dataclass(frozen=True)
class Replay:
    """What a replay wrote."""
    rows: int = 0                  # verdicts written as rows
    audit: int = 0                 # audit rows written (v4)
    counted: int = 0               # verdicts written as hour counts (the queue had been full)
    pictures_missing: int = 0      # of the rows, FAIL/REVIEW whose pictures were never written
    refused: int = 0               # rows the database refused (bad data); reported, not retried
    checkpoint: int = 0            # every entry up to here is now in the database


def read_checkpoint(conn: Connection, key: str) -> int:
    value = conn.execute(select(log_meta.c.value).where(log_meta.c.key == key)).scalar()
    return int(value or 0)


def write_checkpoint(conn: Connection, key: str, seq: int) -> None:
    done = conn.execute(log_meta.update().where(log_meta.c.key == key).values(value=str(seq))).rowcount
    if not done:
        conn.execute(log_meta.insert().values(key=key, value=str(seq)))


def count_key(row: dict, reason: str) -> tuple:
    return (row["t_us"] // _HOUR_US * _HOUR_US, row["station"], row["camera"], row["product"],
            row["verdict"], reason)


def count_rows(counts: collections.Counter) -> list[dict]:
    return [{"hour_us": k[0], "station": k[1], "camera": k[2], "product": k[3], "verdict": k[4],
             "reason": k[5], "n": n} for k, n in counts.items()]


def replay(engine: Engine, store: PictureStore, journal: Journal, upto: int | None = None) -> Replay:
    """Write every journal entry above the database's checkpoint (and at most `upto`).
    Raises the database's OperationalError when it is down: nothing is then lost, the
    entries stay above the checkpoint for the next try."""
    key = journal.checkpoint_key
    with engine.connect().execution_options(sqlite_begin="IMMEDIATE") as conn:
        with conn.begin():
            checkpoint = read_checkpoint(conn, key)
        verdicts, pictures = _collect(journal, checkpoint, upto)
        totals = collections.Counter()
        for i in range(0, len(verdicts), _CHUNK):
            chunk = verdicts[i:i + _CHUNK]
            rows, counts, missing = _build(chunk, pictures, store)
            last = int(chunk[-1]["s"])
            refused = _write_chunk(conn, key, rows, counts, last)
            changes = sum(isinstance(r, AuditRow) for _, r in rows)
            totals.update(rows=len(rows) - refused - changes, audit=changes,
                          counted=sum(counts.values()), pictures_missing=missing, refused=refused)
            checkpoint = last
        if upto is not None and upto > checkpoint:   # only pictures entries, or nothing, left
            with conn.begin():
                write_checkpoint(conn, key, max(upto, read_checkpoint(conn, key)))
            checkpoint = upto
    return Replay(rows=totals["rows"], audit=totals["audit"], counted=totals["counted"],
                  pictures_missing=totals["pictures_missing"], refused=totals["refused"],
                  checkpoint=checkpoint)


def _collect(journal: Journal, after: int, upto: int | None) -> tuple[list[dict], dict]:
    verdicts: dict[int, dict] = {}
    pictures: dict[int, dict] = {}
    for entry in journal.entries(after, upto):
        if "pic" in entry:
            pictures[int(entry["s"])] = entry["pic"]
        elif "r" in entry or "a" in entry:
            verdicts[int(entry["s"])] = entry
    return [verdicts[s] for s in sorted(verdicts)], pictures


def _build(chunk: list[dict], pictures: dict, store: PictureStore
           ) -> tuple[list[tuple[int, dict]], collections.Counter, int]:
    rows, counts, missing = [], collections.Counter(), 0
    for entry in chunk:
        if "a" in entry:
            rows.append((int(entry["s"]), AuditRow(entry["a"])))
            continue
        # A journal written before v4 lacks the v4 columns; one insert needs the same keys.
        row = {"part_id": None, "app_version": None, **entry["r"]}
        if entry.get("c"):
            counts[count_key(row, entry["c"])] += 1
            continue
        if entry.get("p"):
            cols = pictures.get(int(entry["s"])) or _found_pictures(row, entry["u"], store)
            row.update(cols)
            missing += cols["picture_state"] == PictureState.MISSING.value
        rows.append((int(entry["s"]), row))
    return rows, counts, missing


def _found_pictures(row: dict, uid: str, store: PictureStore) -> dict:
    """A row replayed after a kill: its pictures are there if the writer finished them
    (written, then renamed: a file under its final name is complete)."""
    image, overlay = picture_names(row["t_us"], row["station"], uid)
    if not store.path(image).is_file():
        return {"image_path": None, "overlay_path": None, "picture_bytes": None,
                "picture_state": PictureState.MISSING.value}
    overlay = overlay if store.path(overlay).is_file() else None
    return {"image_path": image, "overlay_path": overlay,
            "picture_bytes": store.size_of(image, overlay), "picture_state": PictureState.OK.value}


def _write_chunk(conn: Connection, key: str, rows: list[tuple[int, dict]],
                 counts: collections.Counter, last: int) -> int:
    """One transaction: rows, counts, checkpoint. A row the database refuses (bad data)
    is left out and counted; the rest go in one by one, each with its checkpoint."""
    try:
        with conn.begin():
            _insert(conn, [r for _, r in rows], counts)
            write_checkpoint(conn, key, last)
        return 0
    except (OperationalError, InterfaceError):
        raise
    except DBAPIError:
        pass
    refused = 0
    for seq, row in rows:
        try:
            with conn.begin():
                _insert(conn, [row], collections.Counter())
                write_checkpoint(conn, key, seq)
        except (OperationalError, InterfaceError):
            raise
        except DBAPIError:
            refused += 1
    with conn.begin():
        _insert(conn, [], counts)
        write_checkpoint(conn, key, last)
    return refused


def _insert(conn: Connection, rows: list[dict], counts: collections.Counter) -> None:
    insert_rows(conn, rows)
    if counts:
        conn.execute(insert(unlogged_counts), count_rows(counts))
