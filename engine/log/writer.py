"""The log writer: its own thread, a bounded queue, batched commits, a journal first.

`submit()` never blocks the scoring thread (unless asked to). Each verdict is first written
to the journal (journal.py: one os.write, so a killed app loses none), then queued; when
the queue is full it is counted per hour/station/product/verdict instead (`unlogged_counts`,
so part counts and yield stay true) and a `queue_full` event says so. Pictures are encoded
on a small thread pool and written as files; only then does the batch of rows commit, in
the same transaction as the journal checkpoint.

A failing database: with on_db_failure="stop" it is retried with back-off, and once no
commit has succeeded for db_stop_after_s, `problem()` tells the scoring side to stop
judging; with "spool" the writer keeps taking verdicts, leaves them in the journal, and
replays them when the database answers. What is not written when the writer stops stays
in the journal and is written at the next start (`deferred`).
"""
from __future__ import annotations

import collections
import math
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

from sqlalchemy import Engine, insert
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from engine.errors import InspectError
from engine.log.config import LogConfig
from engine.log.database import write_connection
from engine.log.disk import DiskWatch, free_bytes
from engine.log.events import Throttle
from engine.log.journal import Journal
from engine.log.pictures import DISK_FULL_ERRNOS, PictureStore, picture_names
from engine.log.records import AuditEntry, InspectionRecord, PictureState
from engine.log.recovery import (AuditRow, count_key, count_rows, insert_rows, replay,
                                 write_checkpoint)
from engine.log.registry import audit_row
from engine.log.schema import inspections, unlogged_counts
from engine.types import Decision
from engine.version import APP_VERSION

_PICTURES_PER_BATCH = 16      # bounds the time from a FAIL to its committed row


@dataclass(frozen=True)
class WriterStats:
    running: bool
    submitted: int                 # records handed to submit()
    committed: int                 # rows committed (including spooled rows written later)
    queued: int                    # waiting in the queue now
    unlogged: int                  # counted only (queue full), since start
    lost: int                      # refused by the database (bad data), reported one by one
    pictures_saved: int
    pictures_stored: int           # of those, saved uncompressed to keep up with a burst
    pictures_not_saved: int        # disk full or below the reserve
    pictures_dropped: int          # too much picture memory waiting
    db_ok: bool
    disk_free_mb: float | None
    last_error: str
    spooled: int = 0               # verdicts waiting in the journal for the database now
    deferred: int = 0              # left in the journal when the writer stopped: next start
    problem: str = ""              # why the line must not judge now ("" when it may)


@dataclass(frozen=True, eq=False)
class _Item:
    seq: int
    uid: str
    row: dict                      # the inspections row, plain values (no arrays)
    keep_pictures: bool
    record: InspectionRecord | None   # kept only while its pictures wait to be written


# The text columns a record fills, clipped to the schema's lengths (a longer name would be
# refused by PostgreSQL and lose the verdict).
_TEXT_LIMITS = {name: inspections.c[name].type.length
                for name in ("station", "camera", "product", "model_id", "part_id", "app_version")}


def _clip(value: str, column: str) -> str:
    n = _TEXT_LIMITS[column]
    return value if len(value) <= n else value[:n]


def _finite_or_inf(value: float) -> float:
    """SQLite turns NaN into NULL, which a NOT NULL column refuses: NaN is stored as +inf
    (it sorts with the worst scores), and the row's `reason` says what it was."""
    return math.inf if math.isnan(value) else value


def make_row(record: InspectionRecord, state: PictureState | None) -> dict:
    v = record.verdict
    reason = getattr(v, "reason", "") or ""
    if math.isnan(v.score) and "NaN" not in reason:
        reason = (reason + "; " if reason else "") + "score was NaN (stored as +inf)"
    latency = float(v.latency_ms)
    return {
        "t_us": int(round(record.wall_time * 1e6)), "station": _clip(record.station, "station"),
        "camera": _clip(record.camera, "camera"), "product": _clip(record.product, "product"),
        "model_id": _clip(v.model_id, "model_id"), "frame_id": int(v.frame_id),
        "score": _finite_or_inf(float(v.score)), "threshold": _finite_or_inf(float(v.threshold)),
        "verdict": v.decision.value, "latency_ms": None if math.isnan(latency) else latency,
        "image_path": None, "overlay_path": None, "picture_bytes": None,
        "picture_state": state.value if state else None, "reason": reason or None,
        "part_id": None if record.part_id is None else _clip(str(record.part_id), "part_id"),
        "app_version": _clip(APP_VERSION, "app_version"),
    }


class _Fifo:
    """A bounded FIFO whose room can be awaited before anything is put (see submit)."""

    def __init__(self, size: int):
        self._items: collections.deque[_Item] = collections.deque()
        self._size = size
        self._cond = threading.Condition()

    def wait_room(self, timeout: float) -> bool:
        with self._cond:
            if timeout > 0:
                self._cond.wait_for(lambda: len(self._items) < self._size, timeout)
            return len(self._items) < self._size

    def put(self, item: _Item) -> None:
        with self._cond:
            self._items.append(item)
            self._cond.notify_all()

    def get(self, timeout: float) -> _Item | None:
        with self._cond:
            if not self._items and timeout > 0:
                self._cond.wait_for(lambda: bool(self._items), timeout)
            if not self._items:
                return None
            item = self._items.popleft()
            self._cond.notify_all()
            return item

    def qsize(self) -> int:
        return len(self._items)


class LogWriter:
    """Writes the verdicts of one log. It gets what it needs, not the log: the database
    engine, the pictures store, the config, the journal, `emit` for events, the journal
    checkpoint reached so far, and `go_online` (called before replaying into a database
    that did not answer when the log was opened: brings its schema up to date)."""

    def __init__(self, engine: Engine, pictures: PictureStore, config: LogConfig,
                 journal: Journal, emit: Callable[..., None], checkpoint: int = 0,
                 online: bool = True, go_online: Callable[[], None] = lambda: None):
        self._engine = engine
        self._pictures = pictures
        self._emit = emit
        self._online = online
        self._go_online = go_online
        self._cfg = config
        self._journal = journal
        self._queue = _Fifo(self._cfg.queue_size)
        self._order = threading.Lock()            # journal numbers follow the queue's order
        self._budget = threading.Condition()      # pictures waiting in memory, PASS sampling
        self._progress = threading.Condition()
        self._throttle = Throttle(emit)
        self._pool = ThreadPoolExecutor(self._cfg.encoder_threads, thread_name_prefix="log-encode")
        self._thread = threading.Thread(target=self._run, name="log-writer", daemon=True)
        self._stop_requested = threading.Event()
        self._wake = threading.Event()
        self._give_up_at = float("inf")
        # under _budget
        self._pass_seen: collections.Counter[str] = collections.Counter()
        self._queued_picture_bytes = 0
        self._queued_picture_records = 0
        # under _progress
        self._checkpoint = checkpoint         # every journal entry up to here is in the db
        self._counts: list[tuple[int, tuple]] = []   # (seq, key) counted, not yet in the db
        # spooling (on_db_failure="spool"): entries up to _spooled_upto wait in the journal
        self._spooling = not online
        # Opened offline: whatever the journal holds may be above the server's checkpoint.
        self._spooled_upto = 0 if online else journal.last_seq
        self._spooled_items = 0
        self._retry_at = 0.0
        self._retry_delay = 0.5
        # statistics and health
        self._n = collections.Counter()
        self._db_ok = online
        self._db_busy_since: float | None = None if online else time.monotonic()
        self._fatal = ""                          # the journal cannot be written, the thread died
        self._synced_at = 0.0
        self._disk = DiskWatch(lambda: free_bytes(engine, pictures), self._cfg, self._throttle, emit)
        self._last_error = "" if online else "the database does not answer"

    # ---- the scoring thread's side -------------------------------------------------

    def start(self) -> "LogWriter":
        self._disk.check(force=True)
        self._thread.start()
        return self

    @property
    def running(self) -> bool:
        return self._thread.is_alive() and not self._stop_requested.is_set()

    def submit(self, record: InspectionRecord, timeout: float = 0.0) -> bool:
        """Journal, then queue one record. Returns False when the queue stayed full for
        `timeout` seconds: the verdict was then counted (not logged as a row) and a
        queue_full event raised."""
        if not self.running:
            raise RuntimeError("the log writer is not running")
        keep, state, nbytes = self._reserve_pictures(record, timeout)
        row = make_row(record, state)
        uid = secrets.token_hex(8)
        with self._order:
            queued = self._queue.wait_room(timeout)
            seq = self._journal.next_seq()
            entry = {"s": seq, "u": uid, "r": row}
            if queued:
                entry["p"] = int(keep)
            else:
                entry["c"] = "queue_full"
            self._journal_append(entry)
            if queued:
                self._queue.put(_Item(seq, uid, row, keep, record if keep else None))
            else:
                with self._progress:
                    self._counts.append((seq, count_key(row, "queue_full")))
                    self._n["unlogged"] += 1
        if not queued:
            self._release_pictures(keep, nbytes)
            self._throttle.emit("queue_full", "warning",
                                "The log queue is full: verdicts are counted but not logged "
                                "one by one (no pictures) until the writer catches up.",
                                count_key="unlogged")
        return queued

    def submit_audit(self, entry: AuditEntry) -> None:
        """Journal, then queue one audit row: it commits in journal order with the verdicts,
        and a database that is down (or a kill) leaves it in the journal, written later.
        Never counted-only, and never waiting for room: audit rows are few, so one may go
        over the queue's bound (waiting would hold the order lock the scoring thread takes)."""
        if not self.running:
            raise RuntimeError("the log writer is not running")
        row = AuditRow(audit_row(entry))
        with self._order:
            seq = self._journal.next_seq()
            self._journal_append({"s": seq, "a": dict(row)})
            self._queue.put(_Item(seq, "", row, False, None))

    def _reserve_pictures(self, record: InspectionRecord, timeout: float
                          ) -> tuple[bool, PictureState | None, int]:
        with self._budget:
            self._n["submitted"] += 1
            keep = self._wants_pictures(record)
            state = None
            nbytes = record.picture_bytes if keep else 0
            limit = self._cfg.max_queued_picture_mb * 1e6

            def room() -> bool:     # one picture bigger than the budget still goes alone
                return self._queued_picture_bytes + nbytes <= limit or not self._queued_picture_bytes

            if keep and not room() and timeout > 0:
                self._budget.wait_for(room, timeout)
            if keep and not room():
                keep, state, nbytes = False, PictureState.DROPPED, 0
                self._n["pictures_dropped"] += 1
            self._queued_picture_bytes += nbytes          # reserved before the put, so
            self._queued_picture_records += keep          # concurrent submitters see it
        if state is PictureState.DROPPED:
            self._throttle.emit("pictures_dropped", "warning",
                                "The log writer is behind: pictures are being dropped "
                                "(verdicts are still logged).", count_key="dropped")
        return keep, state, nbytes

    def _release_pictures(self, keep: bool, nbytes: int) -> None:
        with self._budget:
            self._queued_picture_bytes -= nbytes
            self._queued_picture_records -= keep
            self._budget.notify_all()

    def _journal_append(self, entry: dict) -> None:
        try:
            self._journal.append(entry)
        except OSError as exc:      # the verdict still goes to the database; the line stops
            if not self._fatal:
                self._fatal = (f"The log journal in {self._journal.folder} cannot be written "
                               f"({exc.strerror or exc}): free space or fix the folder's "
                               "permissions, then start again.")
                self._emit("journal_error", "error", self._fatal)

    def _wants_pictures(self, record: InspectionRecord) -> bool:
        if record.image is None:
            return False
        if record.verdict.decision != Decision.PASS:
            return True
        every = self._cfg.keep_pass_every
        if every <= 0:
            return False
        self._pass_seen[record.station] += 1
        return self._pass_seen[record.station] % every == 1 or every == 1

    def problem(self) -> str | None:
        """Why the line must not judge now (one sentence), or None. Cheap: read per frame."""
        if self._fatal:
            return self._fatal
        if not self._thread.is_alive():
            return "The log writer is not running: verdicts cannot be recorded."
        since = self._db_busy_since
        if self._cfg.on_db_failure == "stop" and since is not None:
            if time.monotonic() - since > self._cfg.db_stop_after_s:
                why = self._last_error or "still waiting for it"   # the same words while it lasts
                return (f"The inspection log database has accepted nothing for over "
                        f"{self._cfg.db_stop_after_s:g} s ({why}); inspection is stopped until "
                        "it is writable again.")
        return None

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until everything submitted so far is in the database (rows or counts)."""
        with self._order:
            target = self._journal.last_seq
        with self._progress:
            self._progress.wait_for(
                lambda: self._checkpoint >= target or not self._thread.is_alive(), timeout)
            return self._checkpoint >= target

    def stop(self, timeout: float = 10.0) -> WriterStats:
        """Write what is queued, then stop. A database that stays down past most of
        `timeout` leaves the rest in the journal (`deferred`, a `deferred` event): the
        next start writes it."""
        self._give_up_at = time.monotonic() + timeout * 0.7
        self._stop_requested.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._pool.shutdown(wait=True)
        return self.stats()

    @property
    def checkpoint(self) -> int:
        return self._checkpoint

    @property
    def stopped(self) -> bool:
        return not self._thread.is_alive()

    def stats(self) -> WriterStats:
        return WriterStats(
            running=self.running, submitted=self._n["submitted"], committed=self._n["committed"],
            queued=self._queue.qsize(), unlogged=self._n["unlogged"], lost=self._n["lost"],
            pictures_saved=self._n["pictures_saved"], pictures_stored=self._n["pictures_stored"],
            pictures_not_saved=self._n["pictures_not_saved"],
            pictures_dropped=self._n["pictures_dropped"], db_ok=self._db_ok,
            disk_free_mb=None if self._disk.free is None else self._disk.free / 1e6,
            last_error=self._last_error, spooled=self._spooled_items,
            deferred=self._n["deferred"], problem=self.problem() or "")

    # ---- the writer thread ---------------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                batch = self._take_batch()
                if batch:
                    self._write_batch(batch)
                else:
                    self._idle()
                self._housekeeping()
                if self._stop_requested.is_set() and not self._queue.qsize():
                    if self._spooling:
                        self._try_unspool(now_or_never=True)
                    if not self._spooling:
                        self._idle()              # the last counts
                    break
                if self._past_give_up():
                    break
        except Exception as exc:        # a bug must not silently end logging
            self._last_error = f"{type(exc).__name__}: {exc}"
            self._fatal = f"The log writer stopped: {self._last_error}"
            self._emit("writer_error", "error", self._fatal)
        finally:
            self._defer_rest()
            with self._progress:
                self._progress.notify_all()

    def _housekeeping(self) -> None:
        self._disk.check()
        now = time.monotonic()
        if now - self._synced_at >= self._cfg.journal_sync_s:
            self._synced_at = now
            try:
                self._journal.sync()
                self._journal.trim(self._checkpoint)
            except OSError as exc:
                self._journal_failed(exc)

    def _journal_failed(self, exc: OSError) -> None:
        if not self._fatal:
            self._fatal = (f"The log journal in {self._journal.folder} cannot be written "
                           f"({exc.strerror or exc}): free space or fix the folder, then start again.")
            self._emit("journal_error", "error", self._fatal)

    def _past_give_up(self) -> bool:
        return self._stop_requested.is_set() and time.monotonic() > self._give_up_at

    def _take_batch(self) -> list[_Item]:
        first = self._queue.get(timeout=0.1)
        if first is None:
            return []
        batch = [first]
        pictures = int(first.keep_pictures)
        deadline = time.monotonic() + self._cfg.max_batch_delay_s
        while len(batch) < self._cfg.batch_size and pictures < _PICTURES_PER_BATCH:
            left = deadline - time.monotonic()
            item = self._queue.get(timeout=0 if self._stop_requested.is_set() else min(left, 0.02))
            if item is None:
                if left <= 0 or self._stop_requested.is_set():
                    break
                continue
            batch.append(item)
            pictures += item.keep_pictures
        return batch

    def _write_batch(self, batch: list[_Item]) -> None:
        rows = self._pictures_and_rows(batch)
        seqs = [item.seq for item in batch]
        if self._spooling and not self._try_unspool():
            self._park(batch, rows, seqs[-1])
            return
        if self._commit(rows, seqs) == "spool":
            self._park(batch, rows, seqs[-1])
        # "stopping": the rows stay in the journal; _defer_rest reports them

    def _pictures_and_rows(self, batch: list[_Item]) -> list[dict]:
        """Write the batch's pictures (on the pool) and return its rows."""
        if any(item.keep_pictures for item in batch):
            self._disk.check(force=True)      # statvfs is cheap; a burst fills disks fast
        with self._budget:
            backlog = self._queued_picture_records
            for item in batch:
                if item.keep_pictures:
                    self._queued_picture_bytes -= item.record.picture_bytes
                    self._queued_picture_records -= 1
            self._budget.notify_all()
        mode = self._cfg.png_mode
        compress = mode == "compressed" or (mode == "adaptive" and backlog <= self._cfg.adaptive_backlog)
        futures = {}
        for item in batch:
            if item.keep_pictures and not self._disk.pictures_paused:
                futures[item.seq] = self._pool.submit(self._save_pictures, item, compress)
        rows = []
        for item in batch:
            row = type(item.row)(item.row)        # an AuditRow stays one
            if item.keep_pictures:
                row.update(self._picture_columns(futures.get(item.seq)))
            rows.append(row)
        return rows

    def _save_pictures(self, item: _Item, compress: bool):
        row = item.row
        meta = {k: row[k] for k in ("t_us", "station", "camera", "product", "model_id",
                                    "frame_id", "score", "threshold", "verdict", "latency_ms",
                                    "reason", "part_id", "app_version")}
        names = picture_names(row["t_us"], row["station"], item.uid)
        r = item.record
        return self._pictures.save(r.image, r.overlay, names, meta, compress,
                                       self._cfg.overlay_max_side, self._cfg.overlay_jpeg_quality)

    def _picture_columns(self, future) -> dict:
        if future is None:                       # paused: disk below the reserve
            self._n["pictures_not_saved"] += 1
            return {"picture_state": PictureState.NOT_SAVED.value}
        try:
            saved = future.result()
        except OSError as exc:
            self._n["pictures_not_saved"] += 1
            self._last_error = f"pictures: {exc}"
            if exc.errno in DISK_FULL_ERRNOS:
                self._disk.disk_full()
                self._throttle.emit("disk_full", "error",
                                    f"Disk full: no room for pictures in {self._pictures.root}. "
                                    "Verdicts are still logged, without pictures. Free space or "
                                    "lower the retention limits.", count_key="not_saved")
            else:
                self._throttle.emit("writer_error", "error", f"A picture could not be saved: {exc}",
                                    count_key="not_saved")
            return {"picture_state": PictureState.NOT_SAVED.value}
        self._n["pictures_saved"] += 1
        self._n["pictures_stored"] += not saved.compressed
        return {"image_path": saved.image_rel, "overlay_path": saved.overlay_rel,
                "picture_bytes": saved.nbytes, "picture_state": PictureState.OK.value}

    # ---- committing ----------------------------------------------------------------

    def _counts_upto(self, seq: int) -> list[tuple[int, tuple]]:
        with self._progress:       # appended in journal order: a prefix
            n = 0
            while n < len(self._counts) and self._counts[n][0] <= seq:
                n += 1
            return self._counts[:n]

    def _done_upto(self, seq: int, counted: int) -> None:
        with self._progress:
            del self._counts[:counted]
            self._checkpoint = max(self._checkpoint, seq)
            self._progress.notify_all()

    def _commit(self, rows: list[dict], seqs: list[int]) -> str:
        """Rows, the counts up to the last seq and the checkpoint in one transaction,
        retried while the database fails. "ok"; "spool" (spool mode: the database is
        down); "stopping" (the writer is stopping and the database stayed down)."""
        delay, last = 0.1, seqs[-1]
        if self._db_busy_since is None:
            self._db_busy_since = time.monotonic()
        while True:
            counts = self._counts_upto(last)
            try:
                with write_connection(self._engine) as conn, conn.begin():
                    insert_rows(conn, rows)
                    self._insert_counts(conn, counts)
                    write_checkpoint(conn, self._journal.checkpoint_key, last)
                self._committed(last, len(counts),
                                sum(not isinstance(r, AuditRow) for r in rows))
                return "ok"
            except (OperationalError, InterfaceError) as exc:
                self._report_db_error(exc)
                if self._cfg.on_db_failure == "spool":
                    return "spool"
            except DBAPIError as exc:
                # Not transient (bad data): retrying the batch would never succeed. Keep
                # the good rows, lose and report only the bad ones.
                if len(rows) > 1:
                    return self._commit_one_by_one(rows, seqs)
                self._refused(rows, exc)
                rows = []                         # the counts and checkpoint still go in
                continue
            if self._past_give_up():
                return "stopping"
            pause = delay
            if self._stop_requested.is_set():
                pause = min(delay, max(0.0, self._give_up_at - time.monotonic()))
            self._wake.wait(pause)            # stop() cuts a long back-off short
            self._wake.clear()
            delay = min(delay * 2, self._cfg.db_retry_max_s)

    def _commit_one_by_one(self, rows: list[dict], seqs: list[int]) -> str:
        for row, seq in zip(rows, seqs):
            outcome = self._commit([row], [seq])
            if outcome != "ok":
                return outcome
        return "ok"

    def _refused(self, rows: list[dict], exc: DBAPIError) -> None:
        if not rows:
            return
        self._n["lost"] += 1
        self._last_error = f"database refused a row: {getattr(exc, 'orig', exc)}"
        if isinstance(rows[0], AuditRow):
            self._emit("lost", "error", f"One audit record could not be logged: the "
                       f"{self._last_error} ({rows[0]['kind']} {rows[0]['target']}).")
            return
        self._emit("lost", "error", f"One verdict could not be logged: the "
                   f"{self._last_error} (frame {rows[0]['frame_id']}).",
                   {"by_verdict": {rows[0]["verdict"]: 1}})

    def _committed(self, last: int, counted: int, nrows: int) -> None:
        self._n["committed"] += nrows
        self._done_upto(last, counted)
        self._db_busy_since = None
        if not self._db_ok:
            self._db_ok = True
            self._emit("db_recovered", "info", "The inspection log database is writable again.")

    def _insert_counts(self, conn, counts: list[tuple[int, tuple]]) -> None:
        if counts:
            conn.execute(insert(unlogged_counts),
                         count_rows(collections.Counter(key for _, key in counts)))

    def _report_db_error(self, exc: Exception) -> None:
        self._db_ok = False
        text = str(getattr(exc, "orig", exc)).strip().splitlines()[0] if str(exc) else type(exc).__name__
        self._last_error = f"database: {text}"
        then = ("verdicts are spooled in the local journal until it answers"
                if self._cfg.on_db_failure == "spool" else
                "verdicts wait in the journal; the line stops if it stays down")
        if "full" in text.lower() or "no space" in text.lower():
            self._throttle.emit("disk_full", "error",
                                f"Disk full: the inspection log database cannot grow ({text}); {then}.")
        else:
            self._throttle.emit("db_error", "error",
                                f"The inspection log database fails ({text}); {then}.")

    def _idle(self) -> None:
        """No rows waiting: write the counts of verdicts the full queue could only count,
        or, while spooling, see whether the database answers again."""
        if self._spooling:
            self._try_unspool()
            return
        if not self._order.acquire(timeout=0.05):   # a submitter may be waiting for room
            return
        try:
            if self._queue.qsize():
                return
            last = self._journal.last_seq
        finally:
            self._order.release()
        if last > self._checkpoint and self._commit([], [last]) == "spool":
            self._park([], [], last)

    # ---- spooling ------------------------------------------------------------------

    def _park(self, batch: list[_Item], rows: list[dict], upto: int) -> None:
        """The database is down (spool mode): the rows stay in the journal, with what
        became of their pictures, and leave memory."""
        if not self._spooling:
            self._spooling = True
            self._retry_at = time.monotonic() + self._retry_delay
            self._emit("spooling", "warning",
                       f"The inspection log database does not answer ({self._last_error}): "
                       f"verdicts are spooled in {self._journal.folder} and written when it "
                       "answers again.")
        pics = [{"s": item.seq, "pic": {k: row[k] for k in ("image_path", "overlay_path",
                                                             "picture_bytes", "picture_state")}}
                for item, row in zip(batch, rows) if item.keep_pictures]
        try:
            self._journal.append_many(pics)
        except OSError as exc:
            self._journal_failed(exc)
        self._db_busy_since = None            # not stuck: spooling is the plan
        self._spooled_upto = max(self._spooled_upto, upto)
        counted = len(self._counts_upto(self._spooled_upto))
        with self._progress:
            del self._counts[:counted]        # they are in the journal; the replay counts them
        self._spooled_items += len(batch) + counted

    def _try_unspool(self, now_or_never: bool = False) -> bool:
        """Replay the spooled journal if the database answers; True when no longer spooling."""
        now = time.monotonic()
        if now < self._retry_at and not now_or_never:
            return False
        try:
            if not self._online:
                self._go_online()
                self._online = True
            done = replay(self._engine, self._pictures, self._journal, self._spooled_upto)
        except (OperationalError, InterfaceError, InspectError) as exc:
            self._report_db_error(exc)
            self._retry_delay = min(self._retry_delay * 2, self._cfg.db_retry_max_s)
            self._retry_at = now + self._retry_delay
            return False
        self._n["committed"] += done.rows
        self._n["lost"] += done.refused
        with self._progress:
            self._checkpoint = max(self._checkpoint, done.checkpoint)
            self._progress.notify_all()
        n, self._spooled_items, self._spooling = self._spooled_items, 0, False
        self._retry_delay, self._db_ok, self._db_busy_since = 0.5, True, None
        self._emit("db_recovered", "info",
                   f"The inspection log database answers again: {n} spooled verdicts were "
                   "written to it.", {"spooled": n, "rows": done.rows, "counted": done.counted})
        return True

    # ---- stopping ------------------------------------------------------------------

    def _defer_rest(self) -> None:
        """What could not be written stays in the journal: the next start writes it."""
        items = []
        while True:
            item = self._queue.get(timeout=0)
            if item is None:
                break
            items.append(item)
        with self._order:
            last = self._journal.last_seq
        left = last - self._checkpoint
        if left <= 0:
            return
        # Everything above the checkpoint is in the journal: queued, in the batch that
        # could not commit, spooled, or counted.
        self._n["deferred"] = left
        by_verdict = collections.Counter(i.row["verdict"] for i in items
                                         if not isinstance(i.row, AuditRow))
        self._emit("deferred", "warning",
                   f"{left} verdicts could not be written to the database before the log "
                   f"closed; they are kept in the journal ({self._journal.folder}) and "
                   "written at the next start.",
                   {"deferred": left, "by_verdict_queued": dict(by_verdict)})
