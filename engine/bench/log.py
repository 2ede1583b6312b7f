"""`python main.py bench log [--json]`: how fast the inspection log writes and reads.

verdicts_per_s  PASS rows through the writer (no pictures), submit to commit
fails_per_s     FAIL records with a size x size original and overlay, submit to commit
fail_cpu_ms     CPU time (all threads) per FAIL; fails_per_s_idle_estimate = cores / that,
                the rate to expect when nothing else runs on the PC (an estimate)
page_ms         a filtered history page (FAIL, one product, last 7 days, newest first)
                from a log of --rows rows (one million by default)
count_ms        the count for the same filter
Everything runs in a temporary folder (or --url, a server database, plus that folder for
pictures) that is deleted at the end. --url must be a scratch database: the bench writes
rows into it and empties its inspections table, so one that already holds rows is refused
unless --overwrite-scratch says it may be emptied.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from sqlalchemy import insert, text
from sqlalchemy.exc import OperationalError

from engine.errors import InspectError, run_command
from engine.log import InspectionFilter, InspectionLog, InspectionRecord, LogConfig, SortKey
from engine.log.schema import inspections
from engine.types import Decision, Verdict

BENCH_MODEL = "bench-model"      # the model id of every row the bench writes: its own rows


def _camera_like(seed: int, size: int) -> np.ndarray:
    """A part on a lit background with sensor noise: compresses like a real frame."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    base = 90 + 70 * np.exp(-((xx - 0.5) ** 2 + (yy - 0.5) ** 2) * 6) + 25 * np.sin(xx * 9 + seed)
    rgb = np.stack([base, base * 0.95, base * 0.85], -1) + rng.normal(0, 3, (size, size, 3))
    return np.clip(rgb, 0, 255).astype(np.uint8)


def _records(n: int, decision: Decision, pictures: list[np.ndarray] | None):
    t0 = time.time()
    for i in range(n):
        image = pictures[i % len(pictures)] if pictures else None
        overlay = pictures[(i + 1) % len(pictures)] if pictures else None
        verdict = Verdict(i, 0.9 if decision == Decision.FAIL else 0.1, decision, 0.5, None,
                          BENCH_MODEL, 4.0)
        yield InspectionRecord(verdict, t0 + i * 1e-3, "station-1", "cam-1", "part-A", image, overlay)


def _through_writer(log: InspectionLog, records) -> tuple[float, float, object]:
    """(records/s, CPU ms per record, writer stats); the bench waits for room rather than
    let the writer count or drop anything, so every record is a committed row."""
    writer = log.start_writer()
    records = list(records)
    started, cpu = time.perf_counter(), time.process_time()
    for r in records:
        if not writer.submit(r, timeout=60):
            raise RuntimeError("the bench overflowed the writer queue")
    if not writer.flush(600):
        raise RuntimeError("the writer did not finish")
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    stats = log.stop_writer()
    if stats.committed != len(records) or stats.pictures_dropped or stats.pictures_not_saved:
        raise RuntimeError(f"the bench lost records or pictures: {stats}")
    return len(records) / seconds, cpu * 1000 / len(records), stats


def build_rows(log: InspectionLog, n: int, days: float = 30.0, chunk: int = 50_000) -> float:
    """Bulk-insert n plausible rows spread over `days` (Core executemany, big transactions)."""
    rng = np.random.default_rng(0)
    end = time.time()
    started = time.perf_counter()
    products, stations = np.array(["part-A", "part-B", "part-C"]), np.array(["station-1", "station-2"])
    done = 0
    while done < n:
        m = min(chunk, n - done)
        t_us = ((end - days * 86400) + (np.arange(done, done + m) / n) * days * 86400) * 1e6
        roll = rng.random(m)
        verdict = np.where(roll < 0.02, "FAIL", np.where(roll < 0.03, "REVIEW", "PASS"))
        score = np.where(verdict == "FAIL", 0.6 + 0.4 * rng.random(m), 0.55 * rng.random(m))
        label = np.where((verdict == "FAIL") & (rng.random(m) < 0.5), "confirmed_defect", None)
        rows = [{"t_us": int(t), "station": s, "camera": "cam-1", "product": p,
                 "model_id": BENCH_MODEL, "frame_id": done + i, "score": float(sc),
                 "threshold": 0.6, "verdict": v, "latency_ms": 4.0, "label": lb}
                for i, (t, s, p, sc, v, lb) in enumerate(zip(
                    t_us, stations[rng.integers(0, 2, m)], products[rng.integers(0, 3, m)],
                    score, verdict, label))]
        with log.write_connection() as conn, conn.begin():
            conn.execute(insert(inspections), rows)
        done += m
    log.optimize()
    return time.perf_counter() - started


def _median_ms(fn, repeat: int = 7) -> float:
    fn()                                             # first call: caches warm, as in the GUI
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def check_scratch(url: str, folder: Path) -> dict[str, int]:
    """Rows in each table of the database at `url` that the bench did not write (log_meta,
    which any fresh log has, aside; an earlier bench run's inspections rows aside, so a
    scratch database can be used again). Read with a plain connection: opening it as a log
    could already upgrade its schema."""
    from sqlalchemy import inspect

    from engine.log.database import make_engine, resolve

    db_url, _ = resolve(url, folder)
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            names = [n for n in inspect(conn).get_table_names() if n != "log_meta"]
            quote = engine.dialect.identifier_preparer.quote
            counts = {n: conn.execute(*_count_query(quote(n), n == "inspections")).scalar_one()
                      for n in names}
    except OperationalError as e:
        raise InspectError(f"Cannot open the database at {url} "
                           f"({str(e.orig).strip().splitlines()[0]}).") from e
    finally:
        engine.dispose()
    return {n: c for n, c in counts.items() if c}


def _count_query(table: str, skip_bench_rows: bool):
    if skip_bench_rows:
        return (text(f"SELECT COUNT(*) FROM {table} WHERE model_id IS NULL OR model_id <> :m"),
                {"m": BENCH_MODEL})
    return (text(f"SELECT COUNT(*) FROM {table}"),)


def run(args, folder: Path) -> dict:
    cfg = LogConfig(pictures_dir=folder / "pictures" if args.url else None, warn_free_mb=0,
                    reserve_free_mb=0)
    place = args.url or folder / "writes"
    out: dict = {"rows": args.rows, "picture_size": args.size}
    with InspectionLog.open(place, cfg) as log:
        out["verdicts_per_s"], _, _ = _through_writer(log, _records(args.verdicts, Decision.PASS, None))
        pictures = [_camera_like(s, args.size) for s in range(4)]
        out["fails_per_s"], out["fail_cpu_ms"], stats = _through_writer(
            log, _records(args.fails, Decision.FAIL, pictures))
        # CPU time per FAIL (all threads): what the rate would be with every core free
        # (the rate above shares this PC with whatever else runs on it).
        out["fails_per_s_idle_estimate"] = 1000 * (os.cpu_count() or 1) / out["fail_cpu_ms"]
        out["fails_stored_uncompressed"] = stats.pictures_stored
        out["picture_mb_per_fail"] = sum(
            p.stat().st_size for p in log.pictures.root.rglob("*") if p.is_file()) / 1e6 / args.fails
    big = args.url or folder / "million"
    with InspectionLog.open(big, replace(cfg, pictures_dir=folder / "pictures-big")) as log:
        if args.url:
            with log.engine.begin() as conn:
                conn.execute(text("DELETE FROM inspections"))
        out["build_s"] = build_rows(log, args.rows)
        week = InspectionFilter(start=time.time() - 7 * 86400, verdicts=("FAIL",), products=("part-B",))
        first = log.page(week, limit=50)
        out["page_ms"] = _median_ms(lambda: log.page(week, limit=50))
        deep = first
        for _ in range(20):
            deep = log.page(week, after=deep.next, limit=50) if deep.next else deep
        out["page_deep_ms"] = _median_ms(lambda: log.page(week, after=deep.next or first.next, limit=50))
        out["page_unfiltered_ms"] = _median_ms(lambda: log.page(limit=50))
        out["page_by_score_ms"] = _median_ms(lambda: log.page(week, SortKey.SCORE, limit=50))
        out["count_ms"] = _median_ms(lambda: log.count(week))
        out["count_week_all_ms"] = _median_ms(
            lambda: log.count(InspectionFilter(start=time.time() - 7 * 86400)), repeat=3)
        out["summary_week_by_hour_ms"] = _median_ms(
            lambda: log.summary(InspectionFilter(start=time.time() - 7 * 86400)), repeat=3)
        out["page_rows"], out["count"] = len(first.rows), log.count(week)
    return out


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python main.py bench log", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--url", help="a scratch server database to use instead of a temporary SQLite "
                                 "log (refused if it holds rows; its inspections table is emptied)")
    p.add_argument("--rows", type=int, default=1_000_000, help="rows in the read test")
    p.add_argument("--verdicts", type=int, default=20_000, help="PASS rows in the write test")
    p.add_argument("--fails", type=int, default=500, help="FAIL records with pictures")
    p.add_argument("--size", type=int, default=1024, help="picture side in pixels")
    p.add_argument("--overwrite-scratch", action="store_true",
                   help="--url may already hold rows: it is a scratch database the bench may empty")
    return run_command(_bench, p.parse_args(argv))


def _bench(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="bench-log-") as tmp:
        if args.url and not args.overwrite_scratch:
            held = check_scratch(args.url, Path(tmp))
            if held:
                raise InspectError(
                    f"The database at {args.url} already holds rows ("
                    + ", ".join(f"{n}: {c}" for n, c in held.items()) + ") and the bench "
                    "would empty it; point --url at an empty scratch database, or add "
                    "--overwrite-scratch if these rows may go.")
        result = run(args, Path(tmp))
    if args.json:
        print(json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in result.items()}))
    else:
        for key, value in result.items():
            print(f"{key:>26}: {value:.2f}" if isinstance(value, float) else f"{key:>26}: {value}")
    return 0

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
