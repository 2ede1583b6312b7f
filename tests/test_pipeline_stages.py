"""The pipelined live loop (engine/line/stages.py): intake, the networks and finishing on
their own threads, one frame per hand-over. The scorers here are real objects with the
Scorer's three stages whose calls are recorded and can be held or made to fail; each frame
carries its id in its first pixel, so every stage call is tied to the frame it served."""
import threading
import time
from collections import Counter

import numpy as np
import pytest

from engine.line import ModelSpec, Pipeline
from engine.line.stages import Handover, InFlight
from engine.line.trigger import TriggerGate
from engine.meta import ModelMeta
from engine.scoring import Prepared, ScoreResult
from engine.types import Decision, Frame


def wait_for(cond, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.005)


def tag_of(rgb: np.ndarray) -> int:
    return int(rgb[0, 0, 0]) + 256 * int(rgb[0, 0, 1])


class Feed:
    """A camera that makes a frame whenever asked (every `interval` s) until paused; it
    records, when stopped, which of the line's stage threads were still alive. clocked: a
    frame every `interval` s whether taken or not, the newest handed out (the camera's
    latest-frame slot)."""

    def __init__(self, interval: float = 0.002, clocked: bool = False):
        self.interval, self.clocked = interval, clocked
        self.t0 = time.monotonic()
        self.produce = threading.Event()
        self.produce.set()
        self.seq = -1
        self.taken = []
        self.starts = self.stops = 0
        self.alive_at_stop = None
        self.watch: list[threading.Thread] = []

    def start(self):
        self.starts += 1

    def stop(self):
        self.stops += 1
        self.alive_at_stop = [t.name for t in self.watch if t.is_alive() and t is not threading.current_thread()]

    def rate_hz(self):
        return 50.0

    def next_frame(self, timeout):
        if not self.produce.wait(min(timeout, 0.05)):
            return None
        if self.clocked:
            newest = int((time.monotonic() - self.t0) / self.interval)
            if newest <= self.seq:
                time.sleep(self.t0 + (self.seq + 1) * self.interval - time.monotonic())
                newest = self.seq + 1
            self.seq = newest
        else:
            time.sleep(self.interval)
            self.seq += 1
        rgb = np.zeros((16, 16, 3), np.uint8)
        rgb[0, 0, 0], rgb[0, 0, 1] = self.seq % 256, self.seq // 256
        self.taken.append(self.seq)
        return Frame(self.seq, time.monotonic(), time.time(), "fake", rgb)


class StagedScorer:
    """prepare / infer / finish like engine.scoring.Scorer; each call is recorded (stage,
    frame tag, this scorer, thread); a stage can be held (an Event) or made to fail once."""

    def __init__(self, model_id="m", threshold=0.5, delays=(0.0, 0.0, 0.0), feed=None):
        self.model_id, self.threshold = model_id, threshold
        self.info = ModelMeta.from_dict({"model_id": model_id, "threshold": threshold})
        self.delays = dict(zip(("prepare", "infer", "finish"), delays))
        self.hold = {s: threading.Event() for s in self.delays}
        for e in self.hold.values():
            e.set()
        self.fail_next: set[str] = set()
        self.calls: list[tuple[str, int, str, str]] = []
        self.mixed: list[str] = []
        self.failed: list[tuple[str, int]] = []
        self.feed = feed
        self._lock = threading.Lock()

    def _enter(self, stage: str, tag: int) -> None:
        with self._lock:
            self.calls.append((stage, tag, self.model_id, threading.current_thread().name))
            if self.feed is not None:
                self.feed.watch.append(threading.current_thread())
            fail = stage in self.fail_next
            self.fail_next.discard(stage)
            if fail:
                self.failed.append((stage, tag))
        if fail:
            raise RuntimeError(f"{stage} broke")
        self.hold[stage].wait(30)
        time.sleep(self.delays[stage])

    def tags(self, stage: str) -> list[int]:
        with self._lock:
            return [t for s, t, _, _ in self.calls if s == stage]

    def prepare(self, frames):
        tag = tag_of(frames[0])
        self._enter("prepare", tag)
        return Prepared(("prepared by", self.model_id, tag), (frames[0].shape[:2],), time.perf_counter())

    def infer(self, batch):
        who, model_id, tag = batch.inputs
        if model_id != self.model_id:
            self.mixed.append(f"frame {tag} prepared by {model_id}, inferred by {self.model_id}")
        self._enter("infer", tag)
        return ("inferred by", self.model_id, tag)

    def finish(self, batch, small):
        tag = batch.inputs[2]
        if small[1] != self.model_id or batch.inputs[1] != self.model_id:
            self.mixed.append(f"frame {tag} finished by {self.model_id} from {small[1]}")
        self._enter("finish", tag)
        score = 0.9 if tag % 3 == 0 else 0.1
        h, w = batch.shapes[0]
        return ScoreResult(np.array([score]), [np.full((h, w), score, np.float32)],
                           (time.perf_counter() - batch.t0) * 1000.0)


def make_line(scorer=None, feed=None, **kw):
    feed = feed or Feed()
    got, errors, submitted = [], [], []
    kw.setdefault("pipelined", True)        # the CPU's default is serial: these test the stages
    p = Pipeline(feed, "st", on_result=got.append, on_error=lambda where, e: errors.append((where, e)),
                 log_submit=lambda rec: submitted.append(rec) or True, **kw)
    if scorer is not None:
        scorer.feed = feed
        p._scorer, p._threshold = scorer, scorer.threshold
    return p, feed, got, errors, submitted


def judged_tags(got) -> list[int]:
    return [tag_of(r.frame.rgb) for r in got if r.verdict is not None]


# ---- the hand-over ------------------------------------------------------------------------
def test_a_handover_holds_one_item_a_newer_one_replaces_it_or_waits_for_room():
    items = [InFlight(Frame(i, 0.0, 0.0, "t", np.zeros((2, 2, 3), np.uint8)), None, "", 0.5, None, None)
             for i in range(3)]
    newest = Handover(replace=True)
    assert newest.put(items[0]) is None and newest.put(items[1]) is items[0]   # replaced
    assert newest.take(0.01) is items[1] and newest.take(0.01) is None
    room = Handover(replace=False)
    assert room.put(items[0]) is None
    put_back = []
    t = threading.Thread(target=lambda: put_back.append(room.put(items[1])))
    t.start()
    time.sleep(0.1)
    assert t.is_alive() and not put_back                          # waits: one item only
    assert room.take(0.01) is items[0]
    t.join(5)
    assert put_back == [None] and room.take(0.01) is items[1]
    assert room.put(items[2]) is None
    assert room.put(items[0], consumer_alive=lambda: False) is items[0]      # nobody takes it
    room.close()
    assert not room.drained and room.take(0.01) is items[2] and room.drained


# ---- newest frame, one in flight per stage ------------------------------------------------
def test_the_networks_get_the_newest_frame_and_each_stage_holds_at_most_one():
    scorer = StagedScorer()
    p, feed, got, errors, _ = make_line(scorer)
    p.start()
    try:
        wait_for(lambda: len(got) >= 2, 10, "two verdicts")   # the scorer's first inference
        scorer.hold["infer"].clear()            # the networks get busy with one frame
        time.sleep(0.15)
        blocked = scorer.tags("infer")[-1]
        newer = lambda: [t for t in scorer.tags("prepare") if t > blocked]
        wait_for(lambda: len(newer()) >= 6, 10, "frames prepared meanwhile")
        feed.produce.clear()                    # the camera pauses
        time.sleep(0.1)
        prepared, skipped = newer(), p.skipped
        assert scorer.tags("infer")[-1] == blocked and skipped >= len(prepared) - 1
        scorer.hold["finish"].clear()           # finishing will be busy too
        scorer.hold["infer"].set()              # networks free: the newest prepared frame next
        wait_for(lambda: scorer.tags("infer")[-1] != blocked, 10, "the next inference")
        n_infer = len(scorer.tags("infer"))
        assert scorer.tags("infer")[-1] == prepared[-1]
        feed.produce.set()                      # finishing is held: the scoring thread may
        wait_for(lambda: len(scorer.tags("infer")) == n_infer + 1, 10, "one more inference")
        n_finish = len(scorer.tags("finish"))
        time.sleep(0.3)                         # run one frame ahead, then waits for room
        assert len(scorer.tags("infer")) == n_infer + 1 and len(scorer.tags("finish")) == n_finish
        assert len(newer()) > len(prepared) + 1            # intake goes on, newest first
        assert p.skipped > skipped
    finally:
        scorer.hold["finish"].set()
        scorer.hold["infer"].set()
        p.stop()
        assert p.join(10)
    assert not errors
    threads = {s: {t for st, _, _, t in scorer.calls if st == s} for s in ("prepare", "infer", "finish")}
    assert threads == {"prepare": {"scoring intake"}, "infer": {"scoring"}, "finish": {"scoring finish"}}


class Watched(StagedScorer):
    """Says what the other stages were doing while its first inference ran."""
    active = Counter()                          # stage -> calls under way, every scorer

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.seen_during_first: list[tuple[int, int]] = []

    def prepare(self, frames):
        Watched.active["prepare"] += 1
        try:
            return super().prepare(frames)
        finally:
            Watched.active["prepare"] -= 1

    def finish(self, batch, small):
        Watched.active["finish"] += 1
        try:
            return super().finish(batch, small)
        finally:
            Watched.active["finish"] -= 1

    def infer(self, batch):
        if self.tags("infer"):
            return super().infer(batch)
        for _ in range(20):                     # 0.2 s: long enough for the others to show
            self.seen_during_first.append((Watched.active["prepare"], Watched.active["finish"]))
            time.sleep(0.01)
        return super().infer(batch)


def test_a_scorers_first_inference_runs_alone(tmp_path, monkeypatch):
    """It may capture a CUDA graph, which fails when another thread uses the GPU meanwhile:
    while it runs, intake prepares nothing and finishing is idle, also after a model swap
    with the old model's frames still being finished."""
    from engine.scoring import Scorer
    models = {"A": Watched("A", delays=(0.002, 0.01, 0.03)), "B": Watched("B", delays=(0.002, 0.01, 0.03))}
    for name in models:
        (tmp_path / f"{name}.pt").write_bytes(b"x")
    monkeypatch.setattr(Scorer, "from_file", classmethod(
        lambda cls, path, device="auto", backend="eager": models[path[-4]]))
    p, feed, got, errors, _ = make_line()
    p.set_model(ModelSpec("widget", str(tmp_path / "A.pt")))
    assert p.wait_model(10)
    p.start()
    wait_for(lambda: len(got) >= 5, 10, "verdicts of A")
    p.set_model(ModelSpec("widget", str(tmp_path / "B.pt")))
    wait_for(lambda: len(models["B"].tags("finish")) >= 3, 10, "verdicts of B")
    p.stop()
    assert p.join(10) and not errors
    for s in models.values():
        assert len(s.seen_during_first) == 20 and set(s.seen_during_first) == {(0, 0)}, s.seen_during_first


def test_intake_does_not_prepare_every_camera_frame_while_the_networks_are_busy():
    """A camera at 100 frames/s, the networks 100 ms: intake waits until they are about to
    finish and then takes the newest frame, instead of preparing ten per inference."""
    scorer = StagedScorer(delays=(0.0, 0.1, 0.0))
    p, feed, got, errors, _ = make_line(scorer, feed=Feed(0.01, clocked=True))
    p.start()
    wait_for(lambda: len(scorer.tags("infer")) >= 3, 20, "the networks' pace (2 inferences)")
    prepared0, inferred0, seq0 = len(scorer.tags("prepare")), len(scorer.tags("infer")), feed.seq
    wait_for(lambda: len(scorer.tags("infer")) >= inferred0 + 8, 20, "8 more inferences")
    prepared, inferred = len(scorer.tags("prepare")) - prepared0, len(scorer.tags("infer")) - inferred0
    made = feed.seq - seq0
    p.stop()
    assert p.join(10) and not errors
    # about 3 per inference (one at once, the newest ones as the networks get free) where
    # taking every frame would prepare 10
    assert made >= 8 * inferred and prepared <= 5 * inferred, (made, prepared, inferred)
    # and the networks get a fresh frame: prepared at most about two camera frames ago
    ages = [r.verdict.latency_ms - 100 for r in got[-6:]]
    assert max(ages) < 60, ages


@pytest.mark.parametrize("pipelined", [True, False])
def test_verdicts_come_in_frame_order_with_counters_and_every_one_logged(pipelined):
    scorer = StagedScorer(delays=(0.001, 0.008, 0.004))
    p, feed, got, errors, submitted = make_line(scorer, pipelined=pipelined)
    if not pipelined:                           # the serial loop scores whole
        scorer.score = lambda frames: scorer.finish(*(lambda b: (b, scorer.infer(b)))(scorer.prepare(frames)))
    p.start()
    wait_for(lambda: len(got) >= 25, 20, "25 verdicts")
    p.stop()
    assert p.join(10)
    tags = judged_tags(got)
    assert tags == sorted(set(tags)) and len(tags) == len(got) == p.parts
    assert [r.parts for r in got] == list(range(1, len(got) + 1))
    assert p.fails == sum(r.verdict.decision == Decision.FAIL for r in got) > 0
    assert [tag_of(rec.image) for rec in submitted] == tags and all(r.logged for r in got)
    assert not errors


# ---- a model swap mid-flight --------------------------------------------------------------
def test_a_model_swap_mid_flight_never_mixes_scorers_or_their_thresholds(tmp_path, monkeypatch):
    from engine.scoring import Scorer
    models = {"A": StagedScorer("A", 0.3, (0.001, 0.02, 0.01)),
              "B": StagedScorer("B", 0.7, (0.001, 0.02, 0.01))}
    for name in models:
        (tmp_path / f"{name}.pt").write_bytes(b"x")
    monkeypatch.setattr(Scorer, "from_file", classmethod(
        lambda cls, path, device="auto", backend="eager": models[path[-4]]))
    statuses = []
    p, feed, got, errors, _ = make_line(on_model=statuses.append)
    for s in models.values():
        s.feed = feed
    p.start()
    for i in range(8):
        p.set_model(ModelSpec("widget", str(tmp_path / f"{'AB'[i % 2]}.pt")))
        assert p.wait_model(10)
        time.sleep(0.07)
    p.stop()
    assert p.join(10)
    assert not errors and [s.model_id for s in statuses] == list("AB" * 4)   # once per change
    assert models["A"].mixed == models["B"].mixed == []
    served = {}                                 # frame -> the scorers of its stage calls
    for s in models.values():
        for stage, tag, model_id, _ in s.calls:
            served.setdefault(tag, set()).add(model_id)
    assert all(len(ids) == 1 for ids in served.values()), served
    judged = [r for r in got if r.verdict is not None]
    assert {r.verdict.model_id for r in judged} == {"A", "B"}
    for r in judged:
        (model_id,) = served[tag_of(r.frame.rgb)]
        assert r.verdict.model_id == model_id
        assert r.verdict.threshold == models[model_id].threshold


# ---- an error in each stage ---------------------------------------------------------------
def test_an_error_in_each_stage_costs_that_frame_reaches_on_error_and_the_line_goes_on():
    scorer = StagedScorer(delays=(0.0, 0.003, 0.0))
    p, feed, got, errors, submitted = make_line(scorer)
    p.start()
    try:
        for stage in ("prepare", "infer", "finish"):
            n_err, n_got = len(errors), len(got)
            scorer.fail_next.add(stage)
            wait_for(lambda: len(errors) > n_err, 10, f"the {stage} error")
            wait_for(lambda: len(got) >= n_got + 3, 10, f"verdicts after the {stage} error")
    finally:
        p.stop()
        assert p.join(10)
    assert [(w, str(e)) for w, e in errors] == [("Scoring", f"{s} broke") for s in ("prepare", "infer", "finish")]
    assert [stage for stage, _ in scorer.failed] == ["prepare", "infer", "finish"]
    tags = judged_tags(got)
    assert len(tags) == p.parts == len(submitted) and tags == sorted(tags)
    for stage, tag in scorer.failed:            # that frame has no verdict, later ones have
        assert tag not in tags and max(tags) > tag


# ---- stop with frames in flight -----------------------------------------------------------
def test_stop_with_frames_in_flight_ends_every_thread_and_every_verdict_is_logged():
    scorer = StagedScorer(delays=(0.0, 0.01, 0.0))
    p, feed, got, errors, submitted = make_line(scorer)
    p.start()
    wait_for(lambda: len(got) >= 3, 10, "a few verdicts")
    scorer.hold["finish"].clear()               # finishing stalls: the others fill up behind it
    wait_for(lambda: len(scorer.tags("infer")) >= len(scorer.tags("finish")) + 2, 10, "frames in flight")
    time.sleep(0.05)
    p.stop()
    assert not p.join(0.3)                      # join waits for every stage thread
    assert feed.stops == 0                      # and the camera stops after them
    scorer.hold["finish"].set()
    assert p.join(10) and not p.running
    assert feed.stops == 1 and feed.alive_at_stop == []
    assert not any(t.is_alive() for t in feed.watch)
    inferred, tags = scorer.tags("infer"), judged_tags(got)
    assert tags == inferred                     # every inferred frame was finished and judged
    assert [tag_of(r.image) for r in submitted] == tags and len(tags) == p.parts
    # every frame the line took was judged or counted as skipped (some without being prepared)
    assert len(feed.taken) == len(tags) + p.skipped
    assert len(scorer.tags("prepare")) <= len(inferred) + p.skipped
    assert not errors


# ---- PLC trigger: the gate is released once per part --------------------------------------
def test_in_trigger_mode_each_part_releases_the_gate_once_after_its_verdict_even_when_it_fails():
    scorer = StagedScorer()
    p, feed, got, errors, _ = make_line(scorer)
    gate = TriggerGate("st", mode="plc")
    events, done = [], Counter()
    real_done = gate.done

    def counted_done(part_id):
        done[part_id] += 1
        events.append(("done", part_id))
        real_done(part_id)
    gate.done = counted_done
    p.on_result = lambda r: (got.append(r), events.append(("result", r.part_id)))
    p.trigger = gate
    p.start()
    plan = [None, "prepare", "infer", "finish", None, "nomodel", None]
    try:
        for i, fail in enumerate(plan):
            pid = f"P{i}"
            if fail == "nomodel":
                p._scorer = None
            elif fail is not None:
                scorer.fail_next.add(fail)
            assert gate.arm(pid) == (pid, "")
            wait_for(lambda: done[pid] >= 1, 10, f"part {pid}")
            time.sleep(0.02)
            p._scorer = scorer
            wait_for(lambda: not gate.busy, 10, "the gate to be free")
    finally:
        p.stop()
        assert p.join(10)
    assert dict(done) == {f"P{i}": 1 for i in range(len(plan))}
    results = {r.part_id: r for r in got}
    assert set(results) == {"P0", "P4", "P5", "P6"}          # the failed parts have none
    assert results["P5"].verdict is None and all(results[k].verdict for k in ("P0", "P4", "P6"))
    for pid in results:                                      # released after its verdict
        assert events.index(("result", pid)) < events.index(("done", pid))
    assert len(errors) == 3


def test_learn_capture_gets_consecutive_frames_while_the_line_judges():
    scorer = StagedScorer(delays=(0.0, 0.02, 0.0))
    p, feed, got, errors, _ = make_line(scorer)
    captured = []
    p.start()
    wait_for(lambda: got, 10, "a verdict")
    p.capture(8, captured.extend)
    wait_for(lambda: len(captured) == 8, 10, "the capture")
    p.stop()
    assert p.join(10)
    ids = [f.id for f in captured]
    assert ids == list(range(ids[0], ids[0] + 8)) and not errors


def test_the_loop_is_chosen_by_device_unless_asked():
    """Serial on the CPU (measured faster on 2 cores), pipelined on a GPU; either on request."""
    assert not Pipeline(Feed(), "st", device="cpu")._use_stages()
    assert Pipeline(Feed(), "st", device="cpu", pipelined=True)._use_stages()
    assert not Pipeline(Feed(), "st", device="cuda", pipelined=False)._use_stages()
    import torch
    if torch.cuda.is_available():
        assert Pipeline(Feed(), "st", device="cuda")._use_stages()

