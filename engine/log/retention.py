"""Retention: pictures older than N days, or beyond N GB, are deleted; rows are kept
(marked 'purged') because part counts and verdicts are the audit trail.

Rows are marked first and files deleted after: a crash in between leaves files whose rows
say purged, which the startup check deletes; the reverse order would leave rows pointing
at nothing.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable

from sqlalchemy import Engine, and_, func, select, true

from engine.log.config import RetentionPolicy
from engine.log.pictures import PictureStore
from engine.log.records import PictureState
from engine.log.schema import inspections

_OK = PictureState.OK.value


@dataclass(frozen=True)
class RetentionResult:
    pictures_purged: int = 0       # rows whose pictures were deleted
    bytes_freed: int = 0


def apply_retention(engine: Engine, store: PictureStore, policy: RetentionPolicy,
                    now_s: float | None = None, should_stop: Callable[[], bool] = lambda: False,
                    stations: tuple[str, ...] = ()) -> RetentionResult:
    """Apply the policy to the pictures in `store` (rows of `stations`, when given)."""
    c = inspections.c
    purged = freed = 0
    ours = c.station.in_(stations) if stations else true()
    if policy.keep_days is not None:
        cutoff = int(((now_s if now_s is not None else time.time()) - policy.keep_days * 86400) * 1e6)
        while not should_stop():
            n, b = _purge_chunk(engine, store, and_(c.picture_state == _OK, c.t_us < cutoff, ours),
                                policy.chunk)
            purged, freed = purged + n, freed + b
            if n < policy.chunk:
                break
    if policy.keep_gb is not None:
        limit = int(policy.keep_gb * 1e9)
        with engine.connect() as conn:
            total = conn.execute(select(func.coalesce(func.sum(c.picture_bytes), 0))
                                 .where(c.picture_state == _OK, ours)).scalar_one()
        while total > limit and not should_stop():
            n, b = _purge_chunk(engine, store, and_(c.picture_state == _OK, ours), policy.chunk,
                                budget=total - limit)
            if n == 0:
                break
            purged, freed, total = purged + n, freed + b, total - b
    return RetentionResult(purged, freed)


def _purge_chunk(engine: Engine, store: PictureStore, condition, chunk: int,
                 budget: int | None = None) -> tuple[int, int]:
    """Mark the oldest `chunk` matching rows purged, then delete their files. With a
    `budget` (bytes to free), stop once it is covered."""
    c = inspections.c
    with engine.connect().execution_options(sqlite_begin="IMMEDIATE") as conn, conn.begin():
        rows = conn.execute(select(c.id, c.image_path, c.overlay_path, c.picture_bytes)
                            .where(condition).order_by(c.picture_state, c.t_us).limit(chunk)).all()
        if budget is not None:
            taken, need = [], budget
            for r in rows:
                if need <= 0:
                    break
                taken.append(r)
                need -= r.picture_bytes or 0
            rows = taken
        if not rows:
            return 0, 0
        conn.execute(inspections.update().where(c.id.in_([r.id for r in rows]))
                     .values(picture_state=PictureState.PURGED.value))
    freed = 0
    for r in rows:
        freed += store.delete(r.image_path) + store.delete(r.overlay_path)
    return len(rows), freed


class RetentionWorker:
    """Applies the policy every `interval_s` on its own thread; results and errors go to `report`."""

    def __init__(self, engine: Engine, store: PictureStore, policy: RetentionPolicy,
                 report: Callable[[str, str, str, dict | None], None], stations: tuple[str, ...] = ()):
        self._engine, self._store, self._policy, self._report = engine, store, policy, report
        self._stations = stations
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="log-retention", daemon=True)

    def start(self) -> "RetentionWorker":
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                result = apply_retention(self._engine, self._store, self._policy,
                                         should_stop=self._stop.is_set, stations=self._stations)
                if result.pictures_purged:
                    self._report("retention", "info",
                                 f"Retention removed the pictures of {result.pictures_purged} "
                                 f"inspections ({result.bytes_freed / 1e6:.0f} MB); their rows stay.",
                                 {"pictures_purged": result.pictures_purged,
                                  "bytes_freed": result.bytes_freed})
            except Exception as exc:      # the database may be down; try again next round
                self._report("retention", "warning", f"Retention could not run: {exc}", None)
            self._stop.wait(self._policy.interval_s)
