"""History-view queries against a known data set: every filter, both sort keys, keyset
pages forward and back (with ties), counts, hour and shift summaries, labels, models,
threshold changes, CSV and ZIP export. The expected answers are computed in plain Python."""
import csv
import io
import zipfile
from collections import Counter
from datetime import datetime, time as dtime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import insert, select

from engine.log import (UNLABELED, InspectionFilter, Label, ModelInfo, ShiftPlan, SortKey)
from engine.log.schema import inspections, unlogged_counts

try:
    from pg_server import log_place, make_record, pg_server, picture  # noqa: F401
except ImportError:
    from tests.pg_server import log_place, make_record, pg_server, picture  # noqa: F401

BASE = datetime(2024, 3, 10, tzinfo=timezone.utc).timestamp()     # a Sunday, 00:00 UTC
N = 600


def _dataset():
    rows = []
    for i in range(N):
        verdict = "FAIL" if i % 10 == 0 else "REVIEW" if i % 10 == 5 else "PASS"
        label = None
        if verdict == "FAIL":
            label = "confirmed_defect" if i % 20 == 0 else "false_reject"
        rows.append(dict(t_us=int((BASE + (i // 2) * 420) * 1e6),   # pairs share a time: ties
                         station=f"s{i % 2 + 1}", camera="cam", product="ABC"[i % 3],
                         model_id="m2" if i >= 300 else "m1", frame_id=i,
                         score=((i * 37) % 100) / 100, threshold=0.8, verdict=verdict,
                         latency_ms=2.0, label=label, note="glare" if label == "false_reject" else None))
    return rows


@pytest.fixture
def filled(log_place):
    log = log_place.open()
    data = _dataset()
    with log.engine.begin() as conn:
        conn.execute(insert(inspections), data)
        ids = dict(conn.execute(select(inspections.c.frame_id, inspections.c.id)).all())
    for row in data:
        row["id"] = ids[row["frame_id"]]
    yield log, data
    log.close()


def _matches(r, f: InspectionFilter) -> bool:
    t = r["t_us"] / 1e6
    return ((f.start is None or t >= f.start) and (f.end is None or t < f.end)
            and (not f.verdicts or r["verdict"] in f.verdicts)
            and (not f.products or r["product"] in f.products)
            and (not f.stations or r["station"] in f.stations)
            and (not f.model_ids or r["model_id"] in f.model_ids)
            and (not f.labels or (r["label"] or UNLABELED) in f.labels)
            and (f.score_min is None or r["score"] >= f.score_min)
            and (f.score_max is None or r["score"] <= f.score_max))


FILTERS = [
    InspectionFilter(),
    InspectionFilter(verdicts=("FAIL",)),
    InspectionFilter(verdicts=("FAIL", "REVIEW"), products=("A",)),
    InspectionFilter(start=BASE + 3600, end=BASE + 5 * 3600),
    InspectionFilter(labels=("false_reject",)),
    InspectionFilter(labels=(Label.CONFIRMED_DEFECT, UNLABELED), stations=("s1",)),
    InspectionFilter(score_min=0.3, score_max=0.6, model_ids=("m2",)),
    InspectionFilter(start=BASE, end=BASE + 86400, verdicts=("PASS",), products=("B", "C"),
                     score_min=0.5),
]


@pytest.mark.parametrize("sort,descending", [(SortKey.TIME, True), (SortKey.TIME, False),
                                             (SortKey.SCORE, True), (SortKey.SCORE, False)])
def test_keyset_pages_walk_every_row_once_both_ways(filled, sort, descending):
    log, data = filled
    key = "t_us" if sort == SortKey.TIME else "score"
    for flt in (FILTERS[0], FILTERS[2], FILTERS[7]):
        expected = sorted((r for r in data if _matches(r, flt)), key=lambda r: (r[key], r["id"]),
                          reverse=descending)
        got, pages, cursor = [], [], None
        while True:
            page = log.page(flt, sort, descending, after=cursor, limit=7)
            pages.append(page)
            got += [r.id for r in page.rows]
            if page.next is None:
                break
            cursor = page.next
        assert got == [r["id"] for r in expected]
        assert pages[0].previous is None
        # and back again from the last page with `before`
        back, cursor = [r.id for r in pages[-1].rows], pages[-1].previous
        while cursor is not None:
            page = log.page(flt, sort, descending, before=cursor, limit=7)
            back = [r.id for r in page.rows] + back
            cursor = page.previous
        assert back == got


def test_every_filter_counts_and_pages_like_the_oracle(filled):
    log, data = filled
    for flt in FILTERS:
        expected = [r for r in data if _matches(r, flt)]
        assert log.count(flt) == len(expected), flt
        page = log.page(flt, limit=1000)
        assert {r.id for r in page.rows} == {r["id"] for r in expected}, flt
    one = log.get(data[10]["id"])
    assert (one.frame_id, one.label, one.note, one.product) == (10, Label.FALSE_REJECT, "glare", "B")
    assert log.get(10**9) is None


def _oracle_buckets(data, bucket_of):
    out = {}
    for r in data:
        name = bucket_of(datetime.fromtimestamp(r["t_us"] / 1e6, timezone.utc))
        c = out.setdefault(name, Counter())
        c[r["verdict"]] += 1
        c[r["label"]] += 1
    return out


def test_summary_per_hour_and_per_shift(filled):
    log, data = filled
    hours = log.summary(by="hour", tz=timezone.utc)
    expected = _oracle_buckets(data, lambda t: t.strftime("%Y-%m-%d %H:00"))
    assert [h.name for h in hours] == sorted(expected)
    for h in hours:
        e = expected[h.name]
        assert (h.passes, h.fails, h.reviews) == (e["PASS"], e["FAIL"], e["REVIEW"])
        assert (h.confirmed_defects, h.false_rejects) == (e["confirmed_defect"], e["false_reject"])
        assert h.parts == h.passes + h.fails + h.reviews and h.unlogged == 0
        assert h.yield_pct == pytest.approx(100 * e["PASS"] / h.parts)
        assert h.end - h.start == timedelta(hours=1)

    berlin = ZoneInfo("Europe/Berlin")
    plan = ShiftPlan(("06:00", "14:00", "22:00"), ("early", "late", "night"))

    def shift_of(t):
        local = t.astimezone(berlin)
        if local.time() < dtime(6):
            return f"{(local.date() - timedelta(days=1)).isoformat()} night"
        name = "early" if local.time() < dtime(14) else "late" if local.time() < dtime(22) else "night"
        return f"{local.date().isoformat()} {name}"

    shifts = log.summary(by=plan, tz=berlin)
    expected = _oracle_buckets(data, shift_of)
    assert {s.name: (s.passes, s.fails, s.reviews) for s in shifts} == {
        k: (e["PASS"], e["FAIL"], e["REVIEW"]) for k, e in expected.items()}
    night = next(s for s in shifts if s.name == "2024-03-09 night")   # 00:00 UTC is 01:00 Berlin
    assert night.start == datetime(2024, 3, 9, 22, tzinfo=berlin)
    assert night.end == datetime(2024, 3, 10, 6, tzinfo=berlin)

    # Verdicts only counted (queue full) join the parts of their hour.
    with log.engine.begin() as conn:
        conn.execute(insert(unlogged_counts).values(
            hour_us=int((BASE + 3600) * 1e6), station="s1", camera="cam", product="A",
            verdict="PASS", n=5, reason="queue_full"))
    flt = InspectionFilter(start=BASE + 3600, end=BASE + 7200)
    [hour] = log.summary(flt, tz=timezone.utc)
    assert hour.unlogged == 5 and hour.parts == log.count(flt) + 5
    assert log.summary(InspectionFilter(products=("B",), start=BASE + 3600, end=BASE + 7200),
                       tz=timezone.utc)[0].unlogged == 0
    # a label filter cannot know the labels of uncounted parts: they are left out
    assert all(s.unlogged == 0 for s in log.summary(InspectionFilter(labels=(UNLABELED,))))
    assert log.unlogged(flt) == 5


def test_labels_models_and_threshold_changes(filled):
    log, data = filled
    target = data[1]["id"]                                    # a PASS nobody labelled
    assert log.count(InspectionFilter(labels=(UNLABELED,))) == N - 60
    assert log.set_label(target, Label.CONFIRMED_DEFECT, "scratch near hole", who="anna")
    row = log.get(target)
    assert (row.label, row.note, row.labeled_by) == (Label.CONFIRMED_DEFECT, "scratch near hole", "anna")
    assert row.labeled_at_us is not None
    assert log.count(InspectionFilter(labels=("confirmed_defect",))) == 31
    assert log.set_label(target, None, None, who="anna")
    assert log.get(target).label is None and log.get(target).labeled_at_us is None
    assert not log.set_label(10**9, "false_reject")
    with pytest.raises(ValueError):
        log.set_label(target, "maybe")

    log.register_model(ModelInfo("m1", "bracket v1", "A", "/models/m1.pt", 0.8,
                                 {"auroc": 0.97}, created_us=1))
    log.register_model(ModelInfo("m2", "bracket v2", "A", "/models/m2.pt", 0.75,
                                 {"auroc": 0.99, "au_pro": 0.9}, created_us=2))
    log.register_model(ModelInfo("m1", "bracket v1b", "A", "/models/m1.pt", 0.82, {"auroc": 0.98},
                                 created_us=1))                 # re-registered: updated
    assert [m.model_id for m in log.models("A")] == ["m2", "m1"]
    assert log.model("m1").threshold == 0.82 and log.model("m1").metrics == {"auroc": 0.98}
    assert log.model("nope") is None and log.models("Z") == []

    first = log.record_threshold_change("A", 0.8, 0.75, who="anna", model_id="m2", reason="too many FR")
    log.record_threshold_change("B", None, 0.6, who="ben")
    changes = log.threshold_changes("A")
    assert [(c.id, c.who, c.old_threshold, c.new_threshold, c.reason) for c in changes] == [
        (first, "anna", 0.8, 0.75, "too many FR")]
    assert len(log.threshold_changes()) == 2


def test_csv_and_zip_export(log_place, tmp_path):
    with log_place.open() as log:
        writer = log.start_writer()
        for i in range(12):
            kind = "FAIL" if i % 4 == 0 else "PASS"
            writer.submit(make_record(i, kind, image=picture(i), overlay=picture(i + 50)))
        assert writer.flush(20)
        log.stop_writer()
        flt = InspectionFilter(verdicts=("FAIL",))
        assert log.export_csv(flt, tmp_path / "fails.csv") == 3
        lines = list(csv.DictReader(open(tmp_path / "fails.csv", encoding="utf-8")))
        assert [int(r["frame_id"]) for r in lines] == [0, 4, 8]       # oldest first
        assert all(r["verdict"] == "FAIL" and r["image"].endswith(".png") for r in lines)

        assert log.export_zip(flt, tmp_path / "fails.zip") == (3, 6, 0)
        with zipfile.ZipFile(tmp_path / "fails.zip") as zf:
            names = set(zf.namelist())
            inner = list(csv.DictReader(io.TextIOWrapper(zf.open("inspections.csv"), "utf-8")))
            for r in inner:
                assert "pictures/" + r["image"] in names and "pictures/" + r["overlay"] in names
                assert zf.read("pictures/" + r["image"])[:4] == b"\x89PNG"
        assert len(names) == 7
        assert not list(tmp_path.glob("*.partial"))
