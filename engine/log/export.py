"""CSV of a filter, and a ZIP with the CSV plus the pictures, for quality engineers and
auditors. Rows stream page by page, so exporting a year holds one page in memory."""
from __future__ import annotations

import csv
import io
import os
import zipfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from engine.log.queries import InspectionFilter, Page, SortKey
from engine.log.records import InspectionRow

CSV_COLUMNS = ("id", "time_utc", "station", "camera", "product", "model_id", "frame_id",
               "score", "threshold", "verdict", "latency_ms", "label", "note", "labeled_by",
               "labeled_at_utc", "picture_state", "image", "overlay", "reason")


def iter_rows(read_page, flt: InspectionFilter, page_size: int = 2000) -> Iterator[InspectionRow]:
    """All rows of the filter, oldest first; read_page(flt, sort, descending, after, limit) -> Page."""
    after = None
    while True:
        p: Page = read_page(flt, SortKey.TIME, False, after, page_size)
        yield from p.rows
        if p.next is None:
            return
        after = p.next


def _utc(t_us: int | None) -> str:
    if t_us is None:
        return ""
    return datetime.fromtimestamp(t_us / 1e6, tz=timezone.utc).isoformat(timespec="milliseconds")


def _rel(path: Path | None, root: Path) -> str:
    return path.relative_to(root).as_posix() if path else ""


def csv_line(row: InspectionRow, root: Path) -> list:
    return [row.id, _utc(row.t_us), row.station, row.camera, row.product, row.model_id,
            row.frame_id, repr(row.score), repr(row.threshold), row.verdict.value,
            row.latency_ms, row.label.value if row.label else "", row.note or "",
            row.labeled_by or "", _utc(row.labeled_at_us),
            row.picture_state.value if row.picture_state else "",
            _rel(row.image_path, root), _rel(row.overlay_path, root), row.reason or ""]


def write_csv(rows: Iterator[InspectionRow], out, root: Path) -> int:
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    n = 0
    for row in rows:
        writer.writerow(csv_line(row, root))
        n += 1
    return n


def export_csv(rows: Iterator[InspectionRow], dest: Path, root: Path) -> int:
    """Write the CSV atomically (a half-written export never looks finished). Returns rows."""
    dest = Path(dest)
    tmp = dest.with_name(dest.name + ".partial")
    try:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            n = write_csv(rows, f, root)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return n


def export_zip(rows: Iterator[InspectionRow], dest: Path, root: Path,
               include_pictures: bool = True) -> tuple[int, int, int]:
    """inspections.csv plus pictures/<dated path> in one ZIP. Returns (rows, pictures, missing)."""
    dest = Path(dest)
    tmp = dest.with_name(dest.name + ".partial")
    n_rows = n_pics = n_missing = 0
    try:
        # allowZip64: a month of FAIL pictures passes 4 GB.
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, allowZip64=True) as zf:
            with zf.open("inspections.csv", "w", force_zip64=True) as raw:
                text = io.TextIOWrapper(raw, encoding="utf-8", newline="")
                writer = csv.writer(text)
                writer.writerow(CSV_COLUMNS)
                pictures = []
                for row in rows:
                    writer.writerow(csv_line(row, root))
                    n_rows += 1
                    if include_pictures:
                        pictures += [p for p in (row.image_path, row.overlay_path) if p]
                text.flush()
                text.detach()
            for path in pictures:
                if path.is_file():
                    # PNG/JPEG are compressed already: store them, don't deflate again.
                    zf.write(path, "pictures/" + path.relative_to(root).as_posix(),
                             compress_type=zipfile.ZIP_STORED)
                    n_pics += 1
                else:
                    n_missing += 1
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return n_rows, n_pics, n_missing
