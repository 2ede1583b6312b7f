"""engine/line, the live engine without Qt: start/stop never wait, a start during a stop is
taken up by the scoring thread, no part is judged that the log cannot record (the camera
and the Learn capture run on), the model status is a frozen value, and the camera is built
from the settings through the one source vocabulary of engine/camera."""
import dataclasses
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from engine.camera.kinds import KINDS, LABELS, OLD_NAMES
from engine.errors import InspectError
from engine.line import CameraFeed, ModelSpec, ModelStatus, Pipeline, source_for
from engine.meta import ModelMeta
from engine.settings import SOURCE_KINDS, CameraSettings, settings_from_dict
from engine.types import Frame

ROOT = Path(__file__).resolve().parent.parent


def wait_for(cond, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.01)


class SlowStopFeed:
    """Frames on demand; stop() blocks until `release` is set (a camera slow to close)."""

    def __init__(self):
        self.release = threading.Event()
        self.release.set()
        self.starts = 0
        self.stopping = threading.Event()
        self.seq = -1

    def start(self):
        self.starts += 1

    def stop(self):
        self.stopping.set()
        self.release.wait(30)

    def rate_hz(self):
        return 7.0

    def next_frame(self, timeout):
        time.sleep(0.005)
        self.seq += 1
        return Frame(self.seq, time.monotonic(), time.time(), "fake",
                     np.zeros((16, 16, 3), np.uint8), label="good")


def test_stop_and_start_return_at_once_and_a_start_during_a_stop_is_taken_up():
    feed, results = SlowStopFeed(), []
    p = Pipeline(feed, "st", on_result=results.append)
    p.start()
    wait_for(lambda: results, 10, "frames")
    feed.release.clear()                       # the camera will take its time to stop
    p.stop()                                   # returns although the camera has not stopped
    wait_for(feed.stopping.is_set, 10, "the scoring thread to stop the camera")
    assert p.running and p.stopping and not p.requested
    p.start()                                  # also returns: the camera is still stopping
    assert p.requested and feed.starts == 1
    feed.release.set()
    wait_for(lambda: feed.starts == 2, 10, "the line to start over")
    n = len(results)
    wait_for(lambda: len(results) > n, 10, "frames after the restart")
    assert results[-1].camera_fps == 7.0       # the acquisition's rate, the one measurement
    p.stop()
    assert p.join(10) and not p.running and feed.starts == 2


def test_no_part_is_judged_that_the_log_cannot_record_and_learn_still_captures():
    feed, results, submitted = SlowStopFeed(), [], []
    why = ["The inspection log is not open: parts are not judged."]
    p = Pipeline(feed, "st", on_result=results.append, log_guard=lambda: why[0] or None,
                 log_submit=lambda rec: submitted.append(rec) or True)

    class Scorer:
        model_id, threshold = "m", 0.5

        def score(self, frames):
            from engine.scoring import ScoreResult
            return ScoreResult(scores=np.array([0.9]), maps=np.zeros((1, 16, 16), np.float32),
                               latency_ms=1.0)
    p._scorer = Scorer()
    captured = []
    p.capture(3, captured.extend)
    p.start()
    wait_for(lambda: len(captured) == 3 and len(results) >= 3, 10, "the capture")
    assert all(r.verdict is None and r.halted == why[0] for r in results)
    assert submitted == [] and p.parts == 0
    why[0] = ""                                # the log records again: judging resumes
    wait_for(lambda: submitted, 10, "a logged verdict")
    p.stop()
    assert p.join(10)
    judged = [r for r in results if r.verdict is not None]
    assert judged and all(r.logged and not r.halted for r in judged)
    assert len(submitted) == p.parts == p.fails


def test_model_status_is_a_frozen_value_for_no_model_a_bad_file_and_a_model(tmp_path):
    from engine.model import EfficientAD, ModelConfig, save_checkpoint
    said, errors, threads = [], [], []
    p = Pipeline(None, "st", device="cpu", backend="eager",
                 on_model=lambda s: said.append(s) or threads.append(threading.current_thread()),
                 on_error=lambda where, e: errors.append(e))
    p.set_model(ModelSpec(product="a", path=None))
    assert p.wait_model(60)
    p.set_model(ModelSpec(product="b", path=str(tmp_path / "missing.pt")))
    assert p.wait_model(60)
    good = tmp_path / "m.pt"
    save_checkpoint(EfficientAD(ModelConfig(image_size=64, out_channels=8)), good,
                    {"threshold": 0.25, "model_id": "m1", "holdout_scores": [0.1, 0.2]})
    p.set_model(ModelSpec(product="c", path=str(good), threshold=0.4))
    assert p.wait_model(60)                    # loaded on a worker, never the caller's thread
    none, bad, ok = said
    assert threading.main_thread() not in threads
    assert all(isinstance(s, ModelStatus) for s in said)
    with pytest.raises(dataclasses.FrozenInstanceError):
        ok.model_id = "x"
    assert none == ModelStatus(product="a") and not none.has_model
    assert bad.product == "b" and "missing" in bad.error and not bad.model_id and bad.meta is None
    assert isinstance(errors[0], InspectError)
    assert ok.model_id == "m1" and ok.threshold == 0.25 and isinstance(ok.meta, ModelMeta)
    assert ok.meta.holdout_scores == (0.1, 0.2) and p.has_model


def test_the_live_engine_does_not_import_qt():
    code = ("import sys, engine.line, engine.line.pipeline, engine.line.feed; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('PySide6', 'app')]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


# ---- one vocabulary of source kinds ------------------------------------------------------
def test_settings_offer_every_kind_the_camera_spec_knows_and_old_names_still_read():
    from engine.camera.spec import parse_spec
    assert SOURCE_KINDS == KINDS and set(LABELS) == set(KINDS) and "opencv" in KINDS
    for kind in KINDS:
        assert parse_spec({"kind": kind})["kind"] == kind
    for old, kind in OLD_NAMES.items():
        s = settings_from_dict({"schema_version": 2, "camera": {"source": old}})
        assert s.camera.source == kind
        assert parse_spec(old)["kind"] == kind
    assert CameraSettings().source == "sim"


def test_each_source_kind_in_settings_builds_its_source_through_the_spec(tmp_path):
    from engine.camera.folder import FolderSource
    from engine.camera.genicam import GenICamSource
    from engine.camera.simulated import SimulatedLineSource
    from engine.camera.video import VideoSource
    sim = source_for(CameraSettings(source="sim", fps=12.0))
    assert isinstance(sim, SimulatedLineSource) and sim.config.fps == 12.0
    folder = source_for(CameraSettings(source="folder", path=str(tmp_path), fps=3.0))
    assert isinstance(folder, FolderSource) and folder.config.fps == 3.0 and folder.config.loop
    video = source_for(CameraSettings(source="video", path=str(tmp_path / "clip.mp4")))
    assert isinstance(video, VideoSource) and video.config.path.endswith("clip.mp4")
    usb = source_for(CameraSettings(source="opencv", device="2"))
    assert isinstance(usb, VideoSource) and usb.config.index == 2
    assert source_for(CameraSettings(source="opencv")).config.index == 0
    cam = source_for(CameraSettings(source="genicam", producer_file="/x/p.cti", device="S1",
                                    exposure_us=500.0, trigger="Line1:rising"))
    assert isinstance(cam, GenICamSource)
    assert cam.config.producers == ("/x/p.cti",) and cam.config.serial == "S1"
    assert cam.config.settings == {"trigger": "Line1:rising", "exposure_us": 500.0}
    assert "OpenCV camera is chosen by its index" in " ".join(
        CameraSettings(source="opencv", device="usb").problems())


def test_a_feed_from_settings_delivers_frames_and_one_rate():
    feed = CameraFeed(CameraSettings(source="sim", fps=50.0))
    feed.start()
    try:
        frames = []
        wait_for(lambda: frames.append(feed.next_frame(0.2)) or sum(f is not None for f in frames) >= 3,
                 20, "three frames")
        got = [f.id for f in frames if f is not None]
        assert got == sorted(set(got))
        wait_for(lambda: feed.rate_hz() > 0, 10, "a measured rate")
    finally:
        feed.stop()
    assert not feed.running and feed.rate_hz() == 0.0
