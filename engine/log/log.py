"""InspectionLog: one object the GUI and the command line use for everything in the log.

    log = InspectionLog.open("D:/line3/log")                 # SQLite in WAL mode
    log = InspectionLog.open("postgresql://u:p@plant/qa", LogConfig(pictures_dir=share))
    log.add_listener(on_event)                               # LogEvent from any thread
    writer = log.start_writer();  writer.submit(record)      # scoring thread, never waits
    log.page(InspectionFilter(verdicts=("FAIL",)), after=cursor)
    log.close()
"""
from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import OperationalError

from engine.errors import InspectError
from engine.log import export, integrity, queries, registry
from engine.log.config import LogConfig
from engine.log.database import make_engine, resolve
from engine.log.events import safe_call
from engine.log.migrations import migrate
from engine.log.pictures import PictureStore, StoreLock
from engine.log.queries import InspectionFilter, Page, PageCursor, ShiftPlan, SortKey, SummaryRow
from engine.log.records import (InspectionRecord, InspectionRow, Label, LogEvent, ModelInfo,
                                ThresholdChange)
from engine.log.retention import RetentionResult, RetentionWorker, apply_retention
from engine.log.writer import LogWriter, WriterStats


class InspectionLog:
    def __init__(self, engine: Engine, pictures: PictureStore, config: LogConfig):
        self.engine = engine
        self.pictures = pictures
        self.config = config
        self.schema_upgraded_from: int | None = None
        self.startup_check: integrity.PictureCheck | None = None
        self._listeners: list[Callable[[LogEvent], None]] = []
        self._writer: LogWriter | None = None
        self._retention: RetentionWorker | None = None
        self._lock = threading.Lock()

    @classmethod
    def open(cls, location: str | Path, config: LogConfig = LogConfig(),
             on_event: Callable[[LogEvent], None] | None = None) -> "InspectionLog":
        """Open (creating or upgrading) the log at a folder, an SQLite file or a database URL,
        then check pictures against rows (see integrity.py) and report what was repaired."""
        url, pictures_dir = resolve(location, config.pictures_dir)
        engine = make_engine(url, config.sqlite_busy_timeout_s)
        log = cls(engine, PictureStore(pictures_dir, fsync=config.fsync_pictures), config)
        if on_event is not None:
            log.add_listener(on_event)
        try:
            found, now = migrate(engine)
            if 0 < found < now:
                log.schema_upgraded_from = found
                log.emit("schema_upgraded", "info",
                         f"The inspection log was upgraded from schema v{found} to v{now}.")
            log.startup_check = log.check_pictures(
                since_hours=config.startup_check_hours, repair=True)
        except OperationalError as exc:          # server down, wrong password, unreadable file
            engine.dispose()
            raise InspectError(f"Cannot open the inspection log at {log.url}: "
                               f"{str(exc.orig).strip().splitlines()[0]}") from exc
        except BaseException:
            engine.dispose()
            raise
        return log

    @property
    def url(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    # ---- events ----------------------------------------------------------------------

    def add_listener(self, listener: Callable[[LogEvent], None]) -> None:
        self._listeners.append(listener)

    def remove_listener(self, listener: Callable[[LogEvent], None]) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def emit(self, kind: str, level: str, message: str, details: dict | None = None) -> None:
        safe_call(self._listeners, LogEvent(kind, level, message, dict(details or {})))

    # ---- writing ---------------------------------------------------------------------

    def write_connection(self) -> Connection:
        """A connection whose transactions take SQLite's write lock up front."""
        return self.engine.connect().execution_options(sqlite_begin="IMMEDIATE")

    def start_writer(self) -> LogWriter:
        """Start the writer thread (and the retention worker when a policy is set)."""
        with self._lock:
            if self._writer is not None and self._writer.running:
                return self._writer
            self._writer = LogWriter(self).start()
            policy = self.config.retention
            if policy.keep_days is not None or policy.keep_gb is not None:
                self._retention = RetentionWorker(self.engine, self.pictures, policy, self.emit,
                                                  self.config.stations).start()
            return self._writer

    @property
    def writer(self) -> LogWriter | None:
        return self._writer

    def submit(self, record: InspectionRecord, timeout: float = 0.0) -> bool:
        if self._writer is None:
            raise RuntimeError("start_writer() first")
        return self._writer.submit(record, timeout)

    def stop_writer(self, timeout: float = 10.0) -> WriterStats | None:
        with self._lock:
            if self._retention is not None:
                self._retention.stop(timeout)
                self._retention = None
            if self._writer is None:
                return None
            stats = self._writer.stop(timeout)
            self._writer = None
            return stats

    def close(self, timeout: float = 10.0) -> None:
        self.stop_writer(timeout)
        self.engine.dispose()

    def __enter__(self) -> "InspectionLog":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def free_bytes(self) -> list[int]:
        """Free space where pictures go and, for SQLite, where the database grows."""
        free = [self.pictures.free_bytes()]
        if self.engine.url.get_backend_name() == "sqlite":
            free.append(shutil.disk_usage(Path(self.engine.url.database).parent).free)
        return free

    # ---- reading ---------------------------------------------------------------------

    def page(self, flt: InspectionFilter = InspectionFilter(), sort: SortKey = SortKey.TIME,
             descending: bool = True, after: PageCursor | None = None,
             before: PageCursor | None = None, limit: int = 50) -> Page:
        with self.engine.connect() as conn:
            return queries.page(conn, self.pictures.root, flt, sort, descending, after, before, limit)

    def count(self, flt: InspectionFilter = InspectionFilter()) -> int:
        with self.engine.connect() as conn:
            return queries.count(conn, flt)

    def unlogged(self, flt: InspectionFilter = InspectionFilter()) -> int:
        with self.engine.connect() as conn:
            return queries.unlogged_total(conn, flt)

    def get(self, inspection_id: int) -> InspectionRow | None:
        with self.engine.connect() as conn:
            return queries.get(conn, self.pictures.root, inspection_id)

    def summary(self, flt: InspectionFilter = InspectionFilter(), by: str | ShiftPlan = "hour",
                tz=None) -> list[SummaryRow]:
        with self.engine.connect() as conn:
            return queries.summary(conn, flt, by, tz)

    def iter_rows(self, flt: InspectionFilter = InspectionFilter()) -> Iterator[InspectionRow]:
        def read(f, sort, desc, after, limit):
            return self.page(f, sort, desc, after, None, limit)
        return export.iter_rows(read, flt)

    def export_csv(self, flt: InspectionFilter, dest: Path) -> int:
        return export.export_csv(self.iter_rows(flt), dest, self.pictures.root)

    def export_zip(self, flt: InspectionFilter, dest: Path,
                   include_pictures: bool = True) -> tuple[int, int, int]:
        return export.export_zip(self.iter_rows(flt), dest, self.pictures.root, include_pictures)

    # ---- labels, models, thresholds --------------------------------------------------

    def set_label(self, inspection_id: int, label: Label | str | None, note: str | None = None,
                  who: str = "") -> bool:
        with self.write_connection() as conn, conn.begin():
            return registry.set_label(conn, inspection_id, label, note, who)

    def register_model(self, info: ModelInfo) -> None:
        with self.write_connection() as conn, conn.begin():
            registry.register_model(conn, info)

    def models(self, product: str | None = None) -> list[ModelInfo]:
        with self.engine.connect() as conn:
            return registry.list_models(conn, product)

    def model(self, model_id: str) -> ModelInfo | None:
        with self.engine.connect() as conn:
            return registry.get_model(conn, model_id)

    def record_threshold_change(self, product: str, old: float | None, new: float, who: str,
                                model_id: str = "", reason: str = "") -> int:
        with self.write_connection() as conn, conn.begin():
            return registry.record_threshold_change(conn, product, old, new, who, model_id, reason)

    def threshold_changes(self, product: str | None = None, limit: int = 200) -> list[ThresholdChange]:
        with self.engine.connect() as conn:
            return registry.list_threshold_changes(conn, product, limit)

    # ---- maintenance -----------------------------------------------------------------

    def check_pictures(self, since_hours: float | None = None,
                       repair: bool = True) -> integrity.PictureCheck:
        """Pictures against rows (see integrity.py). Not while the writer runs: its pictures
        between rename and commit would look orphaned."""
        if self._writer is not None and self._writer.running:
            raise RuntimeError("stop the writer before checking pictures")
        since_us = None if since_hours is None else int((time.time() - since_hours * 3600) * 1e6)
        lock = StoreLock(self.pictures.root)
        if not lock.acquire():
            result = integrity.PictureCheck(skipped="another program is writing into the pictures folder")
            self.emit("pictures_checked", "warning",
                      f"Picture check skipped: another program is writing into {self.pictures.root}.")
            return result
        try:
            result = integrity.check_pictures(self.engine, self.pictures, since_us, repair,
                                              self.config.stations)
        finally:
            lock.release()
        if result.problems:
            done = "repaired" if result.repaired else "found, not repaired"
            self.emit("pictures_checked", "warning",
                      f"Picture check ({done}): {result.rows_rebuilt} rows rebuilt from their "
                      f"pictures, {result.rows_missing} rows without their pictures, "
                      f"{result.orphans_deleted + result.purged_leftovers} stray files, "
                      f"{result.temp_files} unfinished files.",
                      {"rows_rebuilt": result.rows_rebuilt, "rows_missing": result.rows_missing,
                       "orphans_deleted": result.orphans_deleted,
                       "purged_leftovers": result.purged_leftovers,
                       "temp_files": result.temp_files, "repaired": result.repaired,
                       "examples": list(result.examples)})
        return result

    def optimize(self) -> None:
        """Refresh the query planner's statistics (after a bulk import, or now and then):
        without them SQLite may pick a poor index for a filtered page."""
        with self.write_connection() as conn, conn.begin():
            conn.exec_driver_sql("ANALYZE")

    def apply_retention(self, now_s: float | None = None) -> RetentionResult:
        """Apply the configured retention once, now (the worker does it every interval)."""
        return apply_retention(self.engine, self.pictures, self.config.retention, now_s,
                               stations=self.config.stations)
