"""The startup check: pictures against rows, both ways, and the repairs that are safe.

- temporary files (a write cut short)                 -> deleted
- a finished PNG without a row (crash before commit)  -> its row is rebuilt from the
  metadata inside the PNG, so the verdict and its pictures are not lost
- any other file no row points to                      -> deleted
- a file whose row retention already marked purged    -> deleted (retention was cut short)
- a row whose picture file is gone or truncated        -> picture_state = 'missing'
"""
from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Engine, insert, or_, select
from sqlalchemy.exc import DBAPIError

from engine.log.pictures import IMAGE_SUFFIX, PictureStore, hour_folder
from engine.log.png import read_png_metadata
from engine.log.records import PictureState
from engine.log.schema import inspections
from engine.types import Decision

_REBUILT_FIELDS = ("t_us", "station", "camera", "product", "model_id", "frame_id", "score",
                   "threshold", "verdict", "latency_ms")
_HOUR_US = 3_600_000_000


@dataclass(frozen=True)
class PictureCheck:
    """What the check found; with repair=True each finding was also repaired."""
    repaired: bool = False
    files_checked: int = 0
    rows_checked: int = 0
    temp_files: int = 0              # unfinished writes
    rows_rebuilt: int = 0            # orphan PNGs turned back into rows
    orphans_deleted: int = 0         # files nothing points to that cannot be rebuilt
    purged_leftovers: int = 0        # files of rows retention had already marked purged
    rows_missing: int = 0            # rows whose pictures are gone or cut short
    examples: tuple[str, ...] = field(default=())
    skipped: str = ""                # why the check did not run, when it did not

    @property
    def problems(self) -> int:
        return (self.temp_files + self.rows_rebuilt + self.orphans_deleted
                + self.purged_leftovers + self.rows_missing)


def check_pictures(engine: Engine, store: PictureStore, since_us: int | None = None,
                   repair: bool = True, stations: tuple[str, ...] = ()) -> PictureCheck:
    """Compare picture files with rows (of inspections at or after `since_us`, of
    `stations` when given). The caller holds the store's writer lock."""
    files, temps = _scan_files(store, since_us)
    rows = _scan_rows(engine, since_us, stations)
    referenced = {rel: state for _, image, overlay, _, state in rows
                  for rel in (image, overlay) if rel}
    missing = [rid for rid, image, overlay, nbytes, state in rows
               if state == PictureState.OK.value and store.size_of(image, overlay) != nbytes]
    rebuilt_rows = [r for r in (_rebuild_row(store, rel) for rel in sorted(files - set(referenced))
                                if rel.endswith(IMAGE_SUFFIX)) if r is not None]
    rebuilt_files = {p for r in rebuilt_rows for p in (r["image_path"], r["overlay_path"]) if p}
    orphans = sorted(files - set(referenced) - rebuilt_files)
    leftovers = [rel for rel, state in referenced.items()
                 if state == PictureState.PURGED.value and rel in files]
    examples = [f"row {i} lost its pictures" for i in missing[:5]]
    examples += [f"rebuildable row in {r['image_path']}" for r in rebuilt_rows[:5]]
    examples += [f"orphan file {rel}" for rel in orphans[:5]]
    rebuilt = len(rebuilt_rows)
    if repair:
        for rel in temps + orphans + leftovers:
            store.delete(rel)
        rebuilt = _insert_rebuilt(engine, rebuilt_rows, examples)
        _mark_missing(engine, missing)
    return PictureCheck(repaired=repair, files_checked=len(files), rows_checked=len(rows),
                        temp_files=len(temps), rows_rebuilt=rebuilt, orphans_deleted=len(orphans),
                        purged_leftovers=len(leftovers), rows_missing=len(missing),
                        examples=tuple(examples[:10]))


def _scan_files(store: PictureStore, since_us: int | None) -> tuple[set[str], list[str]]:
    files: set[str] = set()
    temps: list[str] = []
    for rel, is_temp in store.walk(hour_folder(since_us) if since_us is not None else None):
        if is_temp:
            temps.append(rel)
        else:
            files.add(rel)
    return files, temps


def _scan_rows(engine: Engine, since_us: int | None, stations: tuple[str, ...]) -> list:
    c = inspections.c
    q = select(c.id, c.image_path, c.overlay_path, c.picture_bytes, c.picture_state).where(
        or_(c.image_path.is_not(None), c.overlay_path.is_not(None)))
    if since_us is not None:      # whole hours, like the folders the walk looked at
        q = q.where(c.t_us >= since_us // _HOUR_US * _HOUR_US)
    if stations:
        q = q.where(c.station.in_(stations))
    with engine.connect() as conn:
        return conn.execute(q).all()


def _rebuild_row(store: PictureStore, rel: str) -> dict | None:
    meta = read_png_metadata(store.path(rel))
    if not meta or any(k not in meta for k in _REBUILT_FIELDS):
        return None
    try:
        Decision(meta["verdict"])
    except ValueError:
        return None
    overlay = meta.get("overlay")
    if overlay and not store.path(overlay).is_file():
        overlay = None
    row = {k: meta[k] for k in _REBUILT_FIELDS}
    row["reason"] = meta.get("reason")            # v3 pictures carry it
    row["part_id"] = meta.get("part_id")          # v4 pictures carry these two
    row["app_version"] = meta.get("app_version")
    row.update(image_path=rel, overlay_path=overlay, picture_state=PictureState.OK.value,
               picture_bytes=store.size_of(rel, overlay))
    return row


def _insert_rebuilt(engine: Engine, rows: list[dict], examples: list[str]) -> int:
    done = 0
    with engine.connect().execution_options(sqlite_begin="IMMEDIATE") as conn:
        for row in rows:
            try:                       # one by one: a row the database refuses must not
                with conn.begin():     # keep the log from opening
                    conn.execute(insert(inspections), row)
                done += 1
            except DBAPIError as exc:
                examples.insert(0, f"could not rebuild {row['image_path']}: {exc.orig}")
    return done


def _mark_missing(engine: Engine, ids: list[int]) -> None:
    if not ids:
        return
    with engine.connect().execution_options(sqlite_begin="IMMEDIATE") as conn, conn.begin():
        for i in range(0, len(ids), 500):
            conn.execute(inspections.update().where(inspections.c.id.in_(ids[i:i + 500]))
                         .values(picture_state=PictureState.MISSING.value))
