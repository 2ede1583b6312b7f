"""The acquisition thread with scripted sources: latest-frame slot, drops, rate, stop, backoff."""
import dataclasses
import threading
import time

import numpy as np

from engine.camera.acquisition import Acquisition, AcquisitionConfig, State
from engine.camera.base import EndOfStream, FrameSource, SourceLost, SourceUnavailable
from engine.errors import InspectError

FAST = AcquisitionConfig(read_timeout_s=0.05, reconnect_first_s=0.05, reconnect_max_s=0.4,
                         status_every_s=0.1)


class Scripted(FrameSource):
    """Frames every `period` s; open() fails `absent` times first; read() raises SourceLost
    once after `lose_after` frames; EndOfStream after `count` frames."""

    def __init__(self, period=0.005, absent=0, lose_after=None, count=None, fail_open=None):
        super().__init__("scripted")
        self.period, self.absent, self.lose_after, self.count = period, absent, lose_after, count
        self.fail_open = fail_open
        self.open_attempts: list[float] = []
        self._open = False
        self._due = 0.0

    @property
    def is_open(self):
        return self._open

    def open(self):
        self.open_attempts.append(time.monotonic())
        if self.fail_open:
            raise InspectError(self.fail_open)
        if self.absent > 0:
            self.absent -= 1
            raise SourceUnavailable("Camera scripted not found.")
        self._open, self._due = True, time.monotonic()

    def read(self, timeout):
        if self.count is not None and self._next_id >= self.count:
            raise EndOfStream("done")
        if self.lose_after is not None and self._next_id == self.lose_after:
            self.lose_after = None
            raise SourceLost("Camera scripted unplugged.")
        wait = self._due - time.monotonic()
        if wait > timeout:
            time.sleep(timeout)
            return None
        time.sleep(max(0.0, wait))
        self._due += self.period
        return self._make_frame(np.full((4, 4, 3), self._next_id % 256, np.uint8))

    def close(self):
        self._open = False


def collect(acq, seconds, work_s=0.0):
    frames, end = [], time.monotonic() + seconds
    while time.monotonic() < end:
        f = acq.wait_frame(timeout=0.1)
        if f is not None:
            frames.append(f)
            time.sleep(work_s)
    return frames


def test_slow_consumer_drops_old_frames_and_always_gets_the_newest():
    acq = Acquisition(Scripted(period=0.004), config=FAST).start()
    frames = collect(acq, 0.6, work_s=0.03)
    acq.stop()
    s = acq.status()
    assert s.dropped > len(frames)                   # most frames were replaced, not queued
    assert s.received == s.delivered + s.dropped + (acq.latest() is not None)
    ids = [f.id for f in frames]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert max(np.diff(ids)) > 2                      # the consumer skipped to newer frames


def test_fast_consumer_gets_every_frame_and_rate_is_measured():
    acq = Acquisition(Scripted(period=0.01), config=FAST).start()
    frames = collect(acq, 0.8)
    rate = acq.rate_hz()
    acq.stop()
    assert 60 < rate < 130
    ids = [f.id for f in frames]
    assert ids[0] < 3 and len(ids) >= 50
    assert acq.status().dropped <= max(2, len(ids) // 10)


def test_stop_returns_within_a_second_while_a_read_is_waiting():
    src = Scripted(period=30.0)                      # the next frame is far away
    acq = Acquisition(src, config=AcquisitionConfig(read_timeout_s=0.2)).start()
    time.sleep(0.3)
    started = time.monotonic()
    assert acq.stop(timeout=1.0)
    assert time.monotonic() - started < 1.0
    assert acq.status().state == State.STOPPED and not src.is_open


def test_absent_device_is_retried_with_growing_pauses_then_streams():
    seen = []
    src = Scripted(absent=4)
    acq = Acquisition(src, on_status=seen.append, config=FAST).start()
    assert acq.wait_frame(timeout=3.0) is not None
    acq.stop()
    gaps = np.diff(src.open_attempts[:5])
    assert all(later > earlier * 1.5 for earlier, later in zip(gaps, gaps[1:]))   # backoff
    assert any(s.state == State.RECONNECTING and "not found" in s.message for s in seen)
    assert acq.status().reconnects == 0              # it had never streamed yet


def test_lost_device_is_reported_and_reconnected_with_ids_continuing():
    seen = []
    src = Scripted(lose_after=20, absent=0)
    acq = Acquisition(src, on_status=seen.append, config=FAST).start()
    frames = collect(acq, 0.5)
    acq.stop()
    states = [s.state for s in seen]
    lost = states.index(State.RECONNECTING, 1)
    assert State.STREAMING in states[lost:]
    assert "unplugged" in seen[lost].message
    assert acq.status().reconnects == 1
    ids = [f.id for f in frames]
    assert ids == sorted(ids) and max(ids) > 25
    for s in seen:                                   # plain values only cross to the GUI
        for v in dataclasses.astuple(s):
            assert isinstance(v, (int, float, str))


def test_bad_setup_fails_once_with_its_message_and_the_caller_keeps_running():
    seen = []
    src = Scripted(fail_open="GenTL producer /x/broken.cti cannot be loaded.")
    acq = Acquisition(src, on_status=seen.append, config=FAST).start()
    assert acq.wait_frame(timeout=1.0) is None
    assert not acq.running and len(src.open_attempts) == 1
    assert seen[-1].state == State.FAILED and "broken.cti" in seen[-1].message


def test_finite_source_finishes_and_waiters_wake_up():
    acq = Acquisition(Scripted(count=5), config=FAST).start()
    frames = collect(acq, 0.3)
    started = time.monotonic()
    assert acq.wait_frame(timeout=2.0) is None
    assert time.monotonic() - started < 0.5
    assert acq.status().state == State.FINISHED and len(frames) <= 5


def test_a_failing_status_listener_does_not_stop_the_camera():
    def listener(status):
        raise RuntimeError("GUI bug")
    acq = Acquisition(Scripted(), on_status=listener, config=FAST).start()
    assert len(collect(acq, 0.3)) > 10
    acq.stop()


def test_consumer_on_another_thread_sees_frames_in_order():
    acq = Acquisition(Scripted(period=0.002), config=FAST).start()
    got = []
    t = threading.Thread(target=lambda: got.extend(collect(acq, 0.3)))
    t.start()
    t.join()
    acq.stop()
    assert got and [f.id for f in got] == sorted({f.id for f in got})
