"""InspectionLog: one object the GUI and the command line use for everything in the log.

    log = InspectionLog.open("D:/line3/log")                 # SQLite in WAL mode
    log = InspectionLog.open("postgresql://u:p@plant/qa", LogConfig(pictures_dir=share))
    log.add_listener(on_event)                               # LogEvent from any thread
    writer = log.start_writer();  writer.submit(record)      # scoring thread, never waits
    log.page(InspectionFilter(verdicts=("FAIL",)), after=cursor)
    log.close()
"""
from __future__ import annotations

import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Callable, Iterator

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import OperationalError

from engine.errors import InspectError
from engine.log import export, integrity, queries, registry
from engine.log.config import LogConfig
from engine.log.database import make_engine, resolve, write_connection
from engine.log.disk import free_bytes
from engine.log.events import safe_call
from engine.log.journal import Journal
from engine.log.migrations import migrate, read_version
from engine.log.pictures import PictureStore, StoreLock
from engine.log.queries import InspectionFilter, Page, PageCursor, ShiftPlan, SortKey, SummaryRow
from engine.log.records import (AuditEntry, InspectionRecord, InspectionRow, Label, LogEvent,
                                ModelInfo, ThresholdChange)
from engine.log.recovery import Replay, replay, write_checkpoint
from engine.log.retention import RetentionResult, RetentionWorker, apply_retention
from engine.log.schema import SCHEMA_VERSION
from engine.log.writer import LogWriter, WriterStats


ABRUPT_BOUND = 1      # verdicts a killed app may lose: the one being judged at that instant


class LogInUse(InspectError):
    """Another process writes this log's pictures folder (and journal)."""

    def __init__(self, message: str, holder: dict | None):
        super().__init__(message)
        self.holder = holder


class InspectionLog:
    def __init__(self, engine: Engine, pictures: PictureStore, config: LogConfig,
                 read_only: bool = False):
        self.engine = engine
        self.pictures = pictures
        self.config = config
        self.read_only = read_only
        self.online = True                   # False: opened in spool mode, server not answering
        self.schema_upgraded_from: int | None = None
        self.startup_check: integrity.PictureCheck | None = None
        self.journal: Journal | None = None
        self.checkpoint = 0                  # journal entries up to here are in the database
        self.recovered: Replay | None = None  # what the journal gave back when opening
        self.abrupt_stop = ""                # said when the last run did not close
        self._store_lock: StoreLock | None = None
        self._listeners: list[Callable[[LogEvent], None]] = []
        self._writer: LogWriter | None = None
        self._retention: RetentionWorker | None = None
        self._lock = threading.Lock()

    @classmethod
    def open(cls, location: str | Path, config: LogConfig = LogConfig(),
             on_event: Callable[[LogEvent], None] | None = None,
             read_only: bool = False) -> "InspectionLog":
        """Open (creating or upgrading) the log at a folder, an SQLite file or a database URL,
        replay its journal, check pictures against rows (see integrity.py) and report what was
        repaired. Only one process writes a log's pictures folder: a second gets LogInUse,
        saying who holds it; read_only=True opens it for reading beside that writer."""
        url, pictures_dir = resolve(location, config.pictures_dir)
        try:
            store = PictureStore(pictures_dir, fsync=config.fsync_pictures)
        except OSError as exc:
            raise InspectError(f"The pictures folder {pictures_dir} cannot be made "
                               f"({exc.strerror or exc}): choose a folder this app may write.") from exc
        log = cls(make_engine(url, config.sqlite_busy_timeout_s), store, config, read_only)
        if on_event is not None:
            log.add_listener(on_event)
        try:
            if read_only:
                log._open_read_only()
            else:
                log._open_for_writing()
        except OperationalError as exc:          # server down, wrong password, unreadable file
            log._release()
            raise InspectError(f"Cannot open the inspection log at {log.url}: "
                               f"{str(exc.orig).strip().splitlines()[0]}") from exc
        except OSError as exc:                   # a read-only folder, no permission
            log._release()
            raise InspectError(f"The inspection log cannot be written at {exc.filename or log.url} "
                               f"({exc.strerror or exc}): make the folder writable or choose "
                               "another data folder.") from exc
        except BaseException:
            log._release()
            raise
        return log

    def _open_read_only(self) -> None:
        with self.engine.connect() as conn:
            found = read_version(conn)
        if found != SCHEMA_VERSION:
            raise InspectError(f"The inspection log at {self.url} has schema v{found}, this app "
                               f"reads v{SCHEMA_VERSION}; it can only be opened read-only once the "
                               "app writing it has upgraded it.")

    def _open_for_writing(self) -> None:
        lock = StoreLock(self.pictures.root)
        if not lock.acquire():
            holder = lock.holder()
            raise LogInUse(f"The inspection log's folder {self.pictures.root} is in use by "
                           f"{_describe(holder)}: only one app may write it. Close that app, or "
                           "give this one its own data folder.", holder)
        self._store_lock = lock
        try:
            found, now = migrate(self.engine)
        except OperationalError as exc:
            if self.config.on_db_failure != "spool":
                raise
            self.online = False
            self.emit("spooling", "warning",
                      f"The inspection log database {self.url} does not answer "
                      f"({str(exc.orig).strip().splitlines()[0]}): verdicts are spooled in the "
                      "local journal and written when it answers.")
        else:
            self._schema_found(found, now)
        self.journal, moved = Journal.open(self.pictures.root, self.url,
                                           int(self.config.journal_segment_mb * 1e6))
        for folder in moved:
            self.emit("journal_moved", "warning",
                      f"A journal left for another log was moved aside to {folder}; its "
                      "verdicts were not written here.", {"folder": str(folder)})
        if self.online:
            self.recovered = replay(self.engine, self.pictures, self.journal)
            self.checkpoint = self.recovered.checkpoint
            with self.write_connection() as conn, conn.begin():   # a read-only database
                write_checkpoint(conn, self.journal.checkpoint_key, self.checkpoint)  # fails here
            self.startup_check = self.check_pictures(
                since_hours=self.config.startup_check_hours, repair=True)
        self._report_last_run(lock.previous)

    def _schema_found(self, found: int, now: int) -> None:
        if 0 < found < now:
            self.schema_upgraded_from = found
            self.emit("schema_upgraded", "info",
                      f"The inspection log was upgraded from schema v{found} to v{now}.")

    def go_online(self) -> None:
        """The server answers again (the writer, spooling): bring its schema up to date."""
        found, now = migrate(self.engine)
        self._schema_found(found, now)
        self.online = True

    def _report_last_run(self, previous: dict | None) -> None:
        rec = self.recovered or Replay()
        got = (f"{rec.rows + rec.counted} verdicts were recovered from the journal"
               + (f" ({rec.pictures_missing} FAIL/REVIEW without their pictures)"
                  if rec.pictures_missing else ""))
        details = {"recovered": rec.rows + rec.counted, "rows": rec.rows, "counted": rec.counted,
                   "pictures_missing": rec.pictures_missing, "refused": rec.refused,
                   "bound": ABRUPT_BOUND}
        if previous is not None:
            last = self.journal.last_t_us if self.journal else None
            when = _local_time(last / 1e6 if last else previous.get("since"))
            self.abrupt_stop = (f"The app stopped abruptly at {when} (its last recorded verdict); "
                                f"up to {ABRUPT_BOUND} verdict after it may be missing (the part "
                                f"being judged at that instant); {got}.")
            details.update(previous=previous, last_verdict_us=last)
            self.emit("abrupt_stop", "warning", self.abrupt_stop, details)
        elif rec.rows + rec.counted:
            self.emit("recovered", "info", f"When the app last stopped the database was not "
                      f"reachable; now {got} and written.", details)
        if rec.refused:
            self.emit("lost", "error", f"{rec.refused} verdicts from the journal were refused by "
                      "the database (bad data) and could not be logged.", details)

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
        if self.read_only:
            raise InspectError("This window opened the inspection log read-only (another app "
                               "writes it): labels and thresholds are changed in that app.")
        return write_connection(self.engine)

    def start_writer(self) -> LogWriter:
        """Start the writer thread (and the retention worker when a policy is set)."""
        with self._lock:
            if self._writer is not None and self._writer.running:
                return self._writer
            if self.read_only or self.journal is None:
                raise InspectError(f"The inspection log at {self.url} is open read-only (another "
                                   "app writes it): it cannot take verdicts here.")
            self._writer = LogWriter(self.engine, self.pictures, self.config, self.journal,
                                     self.emit, checkpoint=self.checkpoint, online=self.online,
                                     go_online=self.go_online).start()
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
            self.checkpoint = max(self.checkpoint, self._writer.checkpoint)
            self._writer = None
            return stats

    def close(self, timeout: float = 10.0) -> None:
        self.stop_writer(timeout)
        self._release()

    def _release(self) -> None:
        """A clean close: the journal keeps only what the database lacks, the folder's
        lock file says no run is left unfinished."""
        if self.journal is not None:
            self.journal.close(self.checkpoint)
            self.journal = None
        if self._store_lock is not None:
            self._store_lock.release()
            self._store_lock = None
        self.engine.dispose()

    def __enter__(self) -> "InspectionLog":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def free_bytes(self) -> list[int]:
        """Free space where pictures go and, for SQLite, where the database grows."""
        return free_bytes(self.engine, self.pictures)

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

    # ---- the audit trail (v4) --------------------------------------------------------

    def append_audit(self, entry: AuditEntry) -> None:
        """Record one change in the append-only audit table. How to call it:

            from engine.log import AuditEntry
            log.append_audit(AuditEntry(who="anna", role="engineer", kind="threshold",
                                        target="bracket-A", old="0.42", new="0.47",
                                        detail="proposed from 12 known defects"))

        `kind` is one of engine.log.schema.AUDIT_KINDS (else ValueError); `old`/`new` are
        text (json.dumps structured values), None where there is none; `t_us` defaults to
        now. Call it from any thread; it never loses the row: while the writer runs the
        row is journaled first and committed by the writer in order with the verdicts (a
        database that is down, or a kill, leaves it in the journal, written later); with no
        writer running it is committed here, now, and a database that cannot take it raises
        InspectError (one sentence to show) so the caller knows the change was not recorded.
        A log opened read-only raises InspectError. Nothing updates or deletes audit rows."""
        writer = self._writer
        if writer is not None and writer.running:
            try:
                writer.submit_audit(entry)
                return
            except RuntimeError:          # it stopped just now: write the row here instead
                pass
        try:
            with self.write_connection() as conn, conn.begin():
                registry.insert_audit(conn, entry)
        except OperationalError as exc:
            raise InspectError(f"The change could not be recorded in the audit trail at "
                               f"{self.url}: {str(exc.orig).strip().splitlines()[0]}") from exc

    def audit(self, since_us: int | None = None, until_us: int | None = None,
              kind: str | None = None, who: str | None = None,
              limit: int | None = 1000) -> list[AuditEntry]:
        """Audit rows, oldest first: what is committed so far (`log.writer.flush()` first to
        see rows just appended while the writer runs)."""
        with self.engine.connect() as conn:
            return registry.list_audit(conn, since_us, until_us, kind, who, limit)

    # ---- maintenance -----------------------------------------------------------------

    def check_pictures(self, since_hours: float | None = None,
                       repair: bool = True) -> integrity.PictureCheck:
        """Pictures against rows (see integrity.py). Not while the writer runs: its pictures
        between rename and commit would look orphaned."""
        if self._writer is not None and self._writer.running:
            raise RuntimeError("stop the writer before checking pictures")
        since_us = None if since_hours is None else int((time.time() - since_hours * 3600) * 1e6)
        if self._store_lock is None:
            result = integrity.PictureCheck(skipped="opened read-only: another program is "
                                                    "writing into the pictures folder")
            self.emit("pictures_checked", "warning",
                      f"Picture check skipped: another program is writing into {self.pictures.root}.")
            return result
        result = integrity.check_pictures(self.engine, self.pictures, since_us, repair,
                                          self.config.stations)
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


def _describe(holder: dict | None) -> str:
    if not holder:
        return "another program"
    since = holder.get("since")
    return (f"process {holder.get('pid', '?')} on {holder.get('host', '?')}"
            + (f" (since {_local_time(since)})" if since else ""))


def _local_time(t: float | None) -> str:
    if t is None:
        return "an unknown time"
    return datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S")
