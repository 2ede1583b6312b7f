"""Reading the log for the history view: filter, sort, keyset pages, count, summaries.

Pages are keyset ("seek") pages: the next page starts after the last row's (sort key, id)
instead of skipping N rows, so page 10,000 costs what page 1 costs and rows arriving
meanwhile neither shift nor repeat. Every index the history view needs ends in id.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, time as dtime, timedelta, tzinfo
from enum import Enum
from pathlib import Path

from sqlalchemy import BigInteger, Connection, func, literal_column, or_, select, tuple_

from engine.log.records import InspectionRow, Label, PictureState
from engine.log.schema import inspections, unlogged_counts
from engine.types import Decision

UNLABELED = "unlabeled"          # a label filter value: rows the operator has not judged
_QUARTER_US = 900_000_000        # summaries group quarter-hours in SQL, hours/shifts in Python


class SortKey(str, Enum):
    TIME = "time"
    SCORE = "score"


def to_us(value: datetime | float | int) -> int:
    """Epoch microseconds of a datetime (naive means local time) or of epoch seconds."""
    if isinstance(value, datetime):
        return int(round(value.timestamp() * 1e6))
    return int(round(float(value) * 1e6))


@dataclass(frozen=True)
class InspectionFilter:
    """Empty tuples / None mean "any". Times: datetime (naive = local) or epoch seconds."""
    start: datetime | float | None = None      # inclusive
    end: datetime | float | None = None        # exclusive
    verdicts: tuple[str, ...] = ()             # Decision values
    labels: tuple[str, ...] = ()               # Label values and/or UNLABELED
    products: tuple[str, ...] = ()
    stations: tuple[str, ...] = ()
    cameras: tuple[str, ...] = ()
    model_ids: tuple[str, ...] = ()
    score_min: float | None = None             # inclusive
    score_max: float | None = None             # inclusive

    def conditions(self) -> list:
        c = inspections.c
        out = []
        if self.start is not None:
            out.append(c.t_us >= to_us(self.start))
        if self.end is not None:
            out.append(c.t_us < to_us(self.end))
        for column, values in ((c.verdict, self.verdicts), (c.product, self.products),
                               (c.station, self.stations), (c.camera, self.cameras),
                               (c.model_id, self.model_ids)):
            values = [getattr(v, "value", v) for v in values]
            if len(values) == 1:
                out.append(column == values[0])      # '=' lets the planner use (col, t, id)
            elif values:
                out.append(column.in_(values))
        if self.labels:
            named = [getattr(v, "value", v) for v in self.labels if v != UNLABELED]
            either = [c.label.in_(named)] if named else []
            if UNLABELED in self.labels:
                either.append(c.label.is_(None))
            out.append(or_(*either))
        if self.score_min is not None:
            out.append(c.score >= self.score_min)
        if self.score_max is not None:
            out.append(c.score <= self.score_max)
        return out

    @property
    def only_row_columns(self) -> bool:
        """True when the filter uses only what unlogged counts also know (not label, score, model)."""
        return not (self.labels or self.model_ids or self.score_min is not None
                    or self.score_max is not None)


@dataclass(frozen=True)
class PageCursor:
    key: float | int          # the sort key (t_us or score) of the row the page starts after/before
    id: int


@dataclass(frozen=True)
class Page:
    rows: tuple[InspectionRow, ...]
    next: PageCursor | None        # pass as `after` for the following page; None on the last
    previous: PageCursor | None    # pass as `before` for the page before; None on the first


def _sort_column(sort: SortKey):
    return inspections.c.t_us if SortKey(sort) == SortKey.TIME else inspections.c.score


def to_row(m, pictures_root: Path) -> InspectionRow:
    return InspectionRow(
        id=m["id"], t_us=m["t_us"], station=m["station"], camera=m["camera"],
        product=m["product"], model_id=m["model_id"], frame_id=m["frame_id"],
        score=m["score"], threshold=m["threshold"], verdict=Decision(m["verdict"]),
        latency_ms=m["latency_ms"],
        image_path=pictures_root / m["image_path"] if m["image_path"] else None,
        overlay_path=pictures_root / m["overlay_path"] if m["overlay_path"] else None,
        picture_state=PictureState(m["picture_state"]) if m["picture_state"] else None,
        label=Label(m["label"]) if m["label"] else None, note=m["note"],
        labeled_by=m["labeled_by"], labeled_at_us=m["labeled_at_us"], reason=m["reason"],
        part_id=m["part_id"], app_version=m["app_version"])


def page(conn: Connection, pictures_root: Path, flt: InspectionFilter = InspectionFilter(),
         sort: SortKey = SortKey.TIME, descending: bool = True, after: PageCursor | None = None,
         before: PageCursor | None = None, limit: int = 50) -> Page:
    if after is not None and before is not None:
        raise ValueError("give `after` or `before`, not both")
    key, rid = _sort_column(sort), inspections.c.id
    backwards = before is not None
    forward_desc = descending != backwards          # the order this query walks in
    conds = flt.conditions()
    cursor = before if backwards else after
    if cursor is not None:
        pair, at = tuple_(key, rid), tuple_(cursor.key, cursor.id)
        conds.append(pair < at if forward_desc else pair > at)
    order = (key.desc(), rid.desc()) if forward_desc else (key.asc(), rid.asc())
    q = select(inspections).where(*conds).order_by(*order).limit(limit + 1)
    got = [to_row(m, pictures_root) for m in conn.execute(q).mappings()]
    more = len(got) > limit
    got = got[:limit]
    if backwards:
        got.reverse()
    cursor_of = (lambda r: PageCursor(r.t_us if key is inspections.c.t_us else r.score, r.id))
    if not got:
        return Page((), None, None)
    if backwards:
        return Page(tuple(got), cursor_of(got[-1]), cursor_of(got[0]) if more else None)
    return Page(tuple(got), cursor_of(got[-1]) if more else None,
                cursor_of(got[0]) if after is not None else None)


def count(conn: Connection, flt: InspectionFilter = InspectionFilter()) -> int:
    return conn.execute(select(func.count()).select_from(inspections)
                        .where(*flt.conditions())).scalar_one()


def get(conn: Connection, pictures_root: Path, inspection_id: int) -> InspectionRow | None:
    m = conn.execute(select(inspections).where(inspections.c.id == inspection_id)).mappings().first()
    return to_row(m, pictures_root) if m else None


# ---- summaries -----------------------------------------------------------------------

@dataclass(frozen=True)
class ShiftPlan:
    """Shift start times (local, "HH:MM", ascending) and their names."""
    starts: tuple[str, ...] = ("06:00", "14:00", "22:00")
    names: tuple[str, ...] = ("early", "late", "night")

    def __post_init__(self) -> None:
        if not self.starts or len(self.starts) != len(self.names):
            raise ValueError("ShiftPlan needs as many names as start times")
        if list(self.starts) != sorted(self.starts):
            raise ValueError("ShiftPlan start times must ascend")

    def times(self) -> list[dtime]:
        return [dtime(int(s[:2]), int(s[3:5])) for s in self.starts]


@dataclass(frozen=True)
class SummaryRow:
    start: datetime             # local, aware
    end: datetime
    name: str                   # "2024-05-02 14:00" or "2024-05-02 late"
    parts: int                  # logged rows + verdicts only counted (queue full)
    passes: int
    fails: int
    reviews: int
    confirmed_defects: int
    false_rejects: int
    unlogged: int

    @property
    def yield_pct(self) -> float | None:
        return 100.0 * self.passes / self.parts if self.parts else None


def _local(ts: float, tz: tzinfo | None) -> datetime:
    return datetime.fromtimestamp(ts, tz) if tz else datetime.fromtimestamp(ts).astimezone()


def _at(day: date, t: dtime, tz: tzinfo | None) -> datetime:
    return datetime.combine(day, t, tzinfo=tz) if tz else datetime.combine(day, t).astimezone()


def _bucket_of(ts: float, by, tz: tzinfo | None) -> tuple[datetime, datetime, str]:
    local = _local(ts, tz)
    if by == "hour":
        start = local.replace(minute=0, second=0, microsecond=0)
        end = _local(start.timestamp() + 3600, tz)
        return start, end, start.strftime("%Y-%m-%d %H:00")
    times = by.times()
    day = local.date()
    candidates = [(_at(day + timedelta(days=d), t, tz), i)
                  for d in (-1, 0, 1) for i, t in enumerate(times)]
    candidates.sort(key=lambda c: c[0].timestamp())
    for (start, i), (nxt, _) in zip(candidates, candidates[1:]):
        if start.timestamp() <= ts < nxt.timestamp():
            return start, nxt, f"{start.strftime('%Y-%m-%d')} {by.names[i]}"
    raise AssertionError("a shift always contains the time")   # the candidates span 3 days


def summary(conn: Connection, flt: InspectionFilter = InspectionFilter(),
            by: str | ShiftPlan = "hour", tz: tzinfo | None = None) -> list[SummaryRow]:
    """Parts, fails and yield per local hour or per shift, oldest first.

    Unlogged counts (queue full) are kept per UTC hour; they are included when the filter
    uses only time, verdict, product, station and camera."""
    if by != "hour" and not isinstance(by, ShiftPlan):
        raise ValueError("by must be 'hour' or a ShiftPlan")
    c = inspections.c
    quarter = (c.t_us // literal_column(str(_QUARTER_US), BigInteger)).label("quarter")
    q = (select(quarter, c.verdict, c.label, func.count())
         .where(*flt.conditions()).group_by(quarter, c.verdict, c.label))
    tallies: dict[tuple, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    spans: dict[tuple, tuple[datetime, datetime]] = {}
    buckets: dict[float, tuple[datetime, datetime, str]] = {}   # a quarter recurs per verdict/label

    def add(ts: float, verdict: str, label: str | None, n: int, unlogged: bool) -> None:
        if ts not in buckets:
            buckets[ts] = _bucket_of(ts, by, tz)
        start, end, name = buckets[ts]
        key = (start.timestamp(), name)
        spans[key] = (start, end)
        t = tallies[key]
        t[verdict] += n
        t["unlogged"] += n if unlogged else 0
        if label:
            t[label] += n

    for quarter_no, verdict, label, n in conn.execute(q):
        add(quarter_no * _QUARTER_US / 1e6, verdict, label, n, False)
    if flt.only_row_columns:
        for hour_us, verdict, n in conn.execute(_unlogged_query(flt)):
            add(hour_us / 1e6, verdict, None, int(n), True)
    out = []
    for key in sorted(tallies):
        t, (start, end) = tallies[key], spans[key]
        parts = t["PASS"] + t["FAIL"] + t["REVIEW"]
        out.append(SummaryRow(start, end, key[1], parts, t["PASS"], t["FAIL"], t["REVIEW"],
                              t[Label.CONFIRMED_DEFECT.value], t[Label.FALSE_REJECT.value],
                              t["unlogged"]))
    return out


def _unlogged_query(flt: InspectionFilter):
    u = unlogged_counts.c
    conds = []
    if flt.start is not None:
        conds.append(u.hour_us >= to_us(flt.start) // 3_600_000_000 * 3_600_000_000)
    if flt.end is not None:
        conds.append(u.hour_us < to_us(flt.end))
    for column, values in ((u.verdict, flt.verdicts), (u.product, flt.products),
                           (u.station, flt.stations), (u.camera, flt.cameras)):
        if values:
            conds.append(column.in_([getattr(v, "value", v) for v in values]))
    return (select(u.hour_us, u.verdict, func.sum(u.n)).where(*conds)
            .group_by(u.hour_us, u.verdict))


def unlogged_total(conn: Connection, flt: InspectionFilter = InspectionFilter()) -> int:
    """Verdicts counted but not logged as rows, for the filter's time/product/station/verdict."""
    return int(sum(n for _, _, n in conn.execute(_unlogged_query(flt))))
