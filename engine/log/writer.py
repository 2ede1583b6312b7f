"""The log writer: its own thread, a bounded queue, batched commits.

`submit()` never blocks the scoring thread (unless asked to): when the queue is full the
verdict is counted per hour/station/product/verdict and the counts are written to
`unlogged_counts`, so part counts and yield stay true, and a `queue_full` event says so.
Pictures are encoded on a small thread pool, written as files, and only then is the batch
of rows committed. A failing database is retried with back-off; nothing is dropped while
the app runs. What cannot be written when the app stops is reported as `lost` (its
pictures stay on disk and the next startup rebuilds their rows).
"""
from __future__ import annotations

import collections
import queue
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import insert
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from engine.log.disk import DiskWatch
from engine.log.events import Throttle
from engine.errors import InspectError
from engine.log.pictures import DISK_FULL_ERRNOS, StoreLock, picture_names
from engine.log.records import InspectionRecord, PictureState
from engine.log.schema import inspections, unlogged_counts
from engine.types import Decision

if TYPE_CHECKING:
    from engine.log.log import InspectionLog

_PICTURES_PER_BATCH = 16      # bounds the time from a FAIL to its committed row
_HOUR_US = 3_600_000_000


@dataclass(frozen=True)
class WriterStats:
    running: bool
    submitted: int                 # records handed to submit()
    committed: int                 # rows committed
    queued: int                    # waiting in the queue now
    unlogged: int                  # counted only (queue full), since start
    lost: int                      # could not be written when the writer stopped
    pictures_saved: int
    pictures_stored: int           # of those, saved uncompressed to keep up with a burst
    pictures_not_saved: int        # disk full or below the reserve
    pictures_dropped: int          # too much picture memory waiting
    db_ok: bool
    disk_free_mb: float | None
    last_error: str


@dataclass(frozen=True, eq=False)
class _Item:
    record: InspectionRecord
    uid: str
    keep_pictures: bool
    state: PictureState | None     # preset when pictures were refused at submit


def _clip(value: str, n: int) -> str:
    return value if len(value) <= n else value[:n]


class LogWriter:
    def __init__(self, log: "InspectionLog"):
        self._log = log
        self._cfg = log.config
        self._queue: queue.Queue[_Item] = queue.Queue(self._cfg.queue_size)
        self._budget = threading.Condition()      # pictures waiting in memory, PASS sampling
        self._progress = threading.Condition()
        self._throttle = Throttle(log.emit)
        self._pool = ThreadPoolExecutor(self._cfg.encoder_threads, thread_name_prefix="log-encode")
        self._thread = threading.Thread(target=self._run, name="log-writer", daemon=True)
        self._lock = StoreLock(log.pictures.root)
        self._stop_requested = threading.Event()
        self._wake = threading.Event()
        self._give_up_at = float("inf")
        # under _budget
        self._pass_seen: collections.Counter[str] = collections.Counter()
        self._queued_picture_bytes = 0
        self._queued_picture_records = 0
        # under _progress. The queue is FIFO, so "handled >= queued at flush time" means
        # everything queued before the flush is handled, whoever submitted it.
        self._queued_total = 0              # records put in the queue
        self._handled_total = 0             # of those, committed or given up
        self._unlogged: collections.Counter[tuple] = collections.Counter()
        self._counted_total = 0             # records only counted (queue full)
        self._persisted_counted_total = 0   # of those, written to unlogged_counts
        # statistics
        self._n = collections.Counter()
        self._db_ok = True
        self._disk = DiskWatch(log.free_bytes, self._cfg, self._throttle, log.emit)
        self._last_error = ""

    # ---- the scoring thread's side -------------------------------------------------

    def start(self) -> "LogWriter":
        if not self._lock.acquire():
            raise InspectError(f"Another program is already writing into {self._log.pictures.root}; "
                               "give each app its own pictures folder.")
        self._disk.check(force=True)
        self._thread.start()
        return self

    @property
    def running(self) -> bool:
        return self._thread.is_alive() and not self._stop_requested.is_set()

    def submit(self, record: InspectionRecord, timeout: float = 0.0) -> bool:
        """Queue one record. Returns False when the queue stayed full for `timeout` seconds:
        the verdict was then counted (not logged as a row) and a queue_full event raised."""
        if not self.running:
            raise RuntimeError("the log writer is not running")
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
        item = _Item(record, secrets.token_hex(8), keep, state)
        try:
            # Never under a lock: the writer must be able to take items meanwhile.
            if timeout > 0:
                self._queue.put(item, timeout=timeout)
            else:
                self._queue.put_nowait(item)
        except queue.Full:
            with self._budget:
                self._queued_picture_bytes -= nbytes
                self._queued_picture_records -= keep
                self._budget.notify_all()
            self._count_unqueued(item, "queue_full")
            return False
        with self._progress:
            self._queued_total += 1
        return True

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

    def _count_unqueued(self, item: _Item, reason: str) -> None:
        r = item.record
        hour = int(r.wall_time * 1e6) // _HOUR_US * _HOUR_US
        with self._progress:
            self._unlogged[(hour, _clip(r.station, 64), _clip(r.camera, 128),
                            _clip(r.product, 64), r.verdict.decision.value, reason)] += 1
            self._counted_total += 1
            self._n["unlogged"] += 1
        self._throttle.emit("queue_full", "warning",
                            "The log queue is full: verdicts are counted but not logged "
                            "one by one (no pictures) until the writer catches up.",
                            count_key="unlogged")

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until everything submitted so far is committed (or counted and persisted)."""
        with self._progress:
            target_q, target_c = self._queued_total, self._counted_total

            def done() -> bool:
                return self._handled_total >= target_q and self._persisted_counted_total >= target_c

            self._progress.wait_for(lambda: done() or not self._thread.is_alive(), timeout)
            return done()

    def stop(self, timeout: float = 10.0) -> WriterStats:
        """Write what is queued, then stop. A database that stays down past most of
        `timeout` makes the rest `lost` (reported by a `lost` event, even if that comes
        after this returns because a last attempt was still waiting on the database)."""
        self._give_up_at = time.monotonic() + timeout * 0.7
        self._stop_requested.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._pool.shutdown(wait=True)
        if not self._thread.is_alive():
            self._lock.release()
        return self.stats()

    def stats(self) -> WriterStats:
        return WriterStats(
            running=self.running, submitted=self._n["submitted"], committed=self._n["committed"],
            queued=self._queue.qsize(), unlogged=self._n["unlogged"], lost=self._n["lost"],
            pictures_saved=self._n["pictures_saved"], pictures_stored=self._n["pictures_stored"],
            pictures_not_saved=self._n["pictures_not_saved"],
            pictures_dropped=self._n["pictures_dropped"], db_ok=self._db_ok,
            disk_free_mb=None if self._disk.free is None else self._disk.free / 1e6,
            last_error=self._last_error)

    # ---- the writer thread ---------------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                batch = self._take_batch()
                if batch:
                    self._write_batch(batch)
                self._persist_unlogged()
                self._disk.check()
                if self._stop_requested.is_set() and self._queue.empty():
                    break
                if self._past_give_up():
                    self._give_up_queue()
                    break
        except Exception as exc:        # a bug must not silently end logging
            self._last_error = f"{type(exc).__name__}: {exc}"
            self._log.emit("writer_error", "error", f"The log writer stopped: {self._last_error}")
            self._give_up_queue()
        finally:
            self._persist_unlogged()
            with self._progress:
                self._progress.notify_all()

    def _past_give_up(self) -> bool:
        return self._stop_requested.is_set() and time.monotonic() > self._give_up_at

    def _take_batch(self) -> list[_Item]:
        try:
            first = self._queue.get(timeout=0.1)
        except queue.Empty:
            return []
        batch = [first]
        pictures = int(first.keep_pictures)
        deadline = time.monotonic() + self._cfg.max_batch_delay_s
        while len(batch) < self._cfg.batch_size and pictures < _PICTURES_PER_BATCH:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                left = deadline - time.monotonic()
                if left <= 0 or self._stop_requested.is_set():
                    break
                try:
                    item = self._queue.get(timeout=min(left, 0.02))
                except queue.Empty:
                    continue
            batch.append(item)
            pictures += item.keep_pictures
        return batch

    def _write_batch(self, batch: list[_Item]) -> None:
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
                futures[id(item)] = self._pool.submit(self._save_pictures, item, compress)
        rows = []
        for item in batch:
            row = self._row(item)
            if item.keep_pictures:
                row.update(self._picture_columns(futures.get(id(item))))
            rows.append(row)
        lost_before = self._n["lost"]
        if self._commit(rows):
            self._n["committed"] += len(rows) - (self._n["lost"] - lost_before)
        else:
            self._lose(batch, "database unavailable when the writer stopped")
        with self._progress:
            self._handled_total += len(batch)
            self._progress.notify_all()

    def _row(self, item: _Item) -> dict:
        r, v = item.record, item.record.verdict
        return {
            "t_us": int(round(r.wall_time * 1e6)), "station": _clip(r.station, 64),
            "camera": _clip(r.camera, 128), "product": _clip(r.product, 64),
            "model_id": _clip(v.model_id, 64), "frame_id": int(v.frame_id),
            "score": float(v.score), "threshold": float(v.threshold),
            "verdict": v.decision.value, "latency_ms": float(v.latency_ms),
            "image_path": None, "overlay_path": None, "picture_bytes": None,
            "picture_state": item.state.value if item.state else None,
        }

    def _save_pictures(self, item: _Item, compress: bool):
        row = self._row(item)
        meta = {k: row[k] for k in ("t_us", "station", "camera", "product", "model_id",
                                    "frame_id", "score", "threshold", "verdict", "latency_ms")}
        names = picture_names(row["t_us"], row["station"], item.uid)
        r = item.record
        return self._log.pictures.save(r.image, r.overlay, names, meta, compress,
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
                                    f"Disk full: no room for pictures in {self._log.pictures.root}. "
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

    def _commit(self, rows: list[dict]) -> bool:
        """Insert the rows in one transaction, retrying while the database fails.
        False only when the writer is stopping and the database stayed down."""
        delay = 0.1
        while True:
            try:
                with self._log.write_connection() as conn, conn.begin():
                    conn.execute(insert(inspections), rows)
                if not self._db_ok:
                    self._db_ok = True
                    self._log.emit("db_recovered", "info", "The inspection log database is writable again.")
                return True
            except (OperationalError, InterfaceError) as exc:
                self._report_db_error(exc)
            except DBAPIError as exc:
                # Not transient (bad data): retrying the batch would never succeed. Keep
                # the good rows, lose and report only the bad ones.
                if len(rows) == 1:
                    self._n["lost"] += 1
                    self._last_error = f"database refused a row: {getattr(exc, 'orig', exc)}"
                    self._log.emit("lost", "error", f"One verdict could not be logged: the "
                                   f"{self._last_error} (frame {rows[0]['frame_id']}).",
                                   {"by_verdict": {rows[0]["verdict"]: 1}})
                    return True
                for row in rows:
                    self._commit([row])
                return True
            if self._past_give_up():
                return False
            pause = delay
            if self._stop_requested.is_set():
                pause = min(delay, max(0.0, self._give_up_at - time.monotonic()))
            self._wake.wait(pause)            # stop() cuts a long back-off short
            self._wake.clear()
            delay = min(delay * 2, self._cfg.db_retry_max_s)

    def _report_db_error(self, exc: Exception) -> None:
        self._db_ok = False
        text = str(getattr(exc, "orig", exc)).strip().splitlines()[0] if str(exc) else type(exc).__name__
        self._last_error = f"database: {text}"
        if "full" in text.lower() or "no space" in text.lower():
            self._throttle.emit("disk_full", "error",
                                f"Disk full: the inspection log database cannot grow ({text}). "
                                "Verdicts wait in memory, then are counted; free space now.")
        else:
            self._throttle.emit("db_error", "error",
                                f"The inspection log database fails ({text}); retrying. Verdicts "
                                "wait in memory, then are counted.")

    def _persist_unlogged(self) -> None:
        with self._progress:
            if not self._unlogged:
                self._persisted_counted_total = self._counted_total
                self._progress.notify_all()
                return
            counts, self._unlogged = self._unlogged, collections.Counter()
            upto = self._counted_total
        rows = [{"hour_us": k[0], "station": k[1], "camera": k[2], "product": k[3],
                 "verdict": k[4], "reason": k[5], "n": n} for k, n in counts.items()]
        try:
            with self._log.write_connection() as conn, conn.begin():
                conn.execute(insert(unlogged_counts), rows)
        except DBAPIError as exc:
            self._report_db_error(exc)
            with self._progress:
                self._unlogged.update(counts)     # try again next round
            return
        with self._progress:
            self._persisted_counted_total = max(self._persisted_counted_total, upto)
            self._progress.notify_all()

    def _lose(self, items: list[_Item], why: str) -> None:
        self._n["lost"] += len(items)
        by_verdict = collections.Counter(i.record.verdict.decision.value for i in items)
        with_pictures = sum(i.keep_pictures for i in items)
        self._log.emit("lost", "error",
                       f"{len(items)} verdicts could not be logged ({why}). Pictures already on "
                       "disk are turned back into rows at the next start.",
                       {"by_verdict": dict(by_verdict), "with_pictures": with_pictures})

    def _give_up_queue(self) -> None:
        items = []
        while True:
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                break
        if items:
            self._lose(items, "the writer stopped before it could write them")
            with self._progress:
                self._handled_total += len(items)
                self._progress.notify_all()
