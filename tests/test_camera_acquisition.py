"""The acquisition thread with scripted sources: latest-frame slot, drops, rate, stop, backoff.

Every test waits for a condition (frames taken, a state reached) with a generous deadline,
never for a fixed window, and checks counts and orders, not durations: rate and latency
bounds belong to `python main.py bench camera`."""
import dataclasses
import threading
import time

import numpy as np
import pytest

from engine.camera.acquisition import Acquisition, AcquisitionConfig, State
from engine.camera.base import EndOfStream, FrameSource, SourceLost, SourceUnavailable
from engine.errors import InspectError

FAST = AcquisitionConfig(read_timeout_s=0.05, reconnect_first_s=0.05, reconnect_max_s=0.4,
                         status_every_s=0.1)


class Scripted(FrameSource):
    """Frames every `period` s; open() fails `absent` times first; read() raises SourceLost
    once after `lose_after` frames; EndOfStream after `count` frames."""

    def __init__(self, period=0.005, absent=0, lose_after=None, count=None, fail_open=None,
                 tokens=None):
        super().__init__("scripted")
        self.period, self.absent, self.lose_after, self.count = period, absent, lose_after, count
        self.fail_open = fail_open
        self.tokens = tokens               # a Semaphore: one frame per token (lock-step)
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
        self._start = self._due

    def read(self, timeout):
        if self.count is not None and self._next_id >= self.count:
            raise EndOfStream("done")
        if self.lose_after is not None and self._next_id == self.lose_after:
            self.lose_after = None
            raise SourceLost("Camera scripted unplugged.")
        if self.tokens is not None:        # lock-step: stamped `period` apart, made on demand
            if not self.tokens.acquire(timeout=timeout):
                return None
            frame = self._make_frame(np.full((4, 4, 3), self._next_id % 256, np.uint8))
            return dataclasses.replace(frame, t=self._start + frame.id * self.period)
        wait = self._due - time.monotonic()
        if wait > timeout:
            time.sleep(timeout)
            return None
        time.sleep(max(0.0, wait))
        self._due += self.period
        return self._make_frame(np.full((4, 4, 3), self._next_id % 256, np.uint8))

    def close(self):
        self._open = False


def wait_for(cond, what: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, f"timed out after {timeout_s} s waiting for {what}"
        time.sleep(0.005)


def take(acq, n, after_each=None, timeout_s: float = 20.0):
    """Take n frames (waiting for each); after_each(frame) runs after every take."""
    frames, deadline = [], time.monotonic() + timeout_s
    while len(frames) < n:
        assert time.monotonic() < deadline, f"only {len(frames)} of {n} frames in {timeout_s} s"
        f = acq.wait_frame(timeout=0.1)
        if f is not None:
            frames.append(f)
            if after_each is not None:
                after_each(f)
    return frames


def test_slow_consumer_drops_old_frames_and_always_gets_the_newest():
    acq = Acquisition(Scripted(period=0.004), config=FAST).start()

    def three_more_arrive(frame):          # the consumer is busy while 3 frames arrive
        seen = acq.status().received
        wait_for(lambda: acq.status().received >= seen + 3, "three more frames")
    frames = take(acq, 8, after_each=three_more_arrive)
    acq.stop()
    s = acq.status()
    assert s.dropped >= 2 * (len(frames) - 1)         # replaced in the slot, not queued
    assert s.received == s.delivered + s.dropped + (acq.latest() is not None)
    gaps = np.diff([f.id for f in frames])
    assert (gaps >= 3).all()                           # the consumer skipped to newer frames


def test_fast_consumer_gets_every_frame_and_rate_is_measured_from_frame_times():
    tokens = threading.Semaphore(0)
    acq = Acquisition(Scripted(period=0.01, tokens=tokens), config=FAST).start()
    tokens.release()
    frames = take(acq, 40, after_each=lambda f: tokens.release())
    rate = acq.rate_hz()
    acq.stop()
    assert [f.id for f in frames] == list(range(40))   # every frame, in order
    assert acq.status().dropped == 0
    # frames are stamped 10 ms apart: the rate is 100/s whatever the machine's load
    assert rate == pytest.approx(100.0, rel=1e-6)


def test_stop_ends_the_thread_while_a_read_is_waiting():
    src = Scripted(period=300.0)                     # the next frame is five minutes away
    seen = []
    acq = Acquisition(src, on_status=seen.append, config=AcquisitionConfig(read_timeout_s=0.2)).start()
    wait_for(lambda: any(s.state == State.STREAMING for s in seen), "streaming")
    assert acq.stop(timeout=30.0)                    # far sooner than the frame would come
    assert acq.status().state == State.STOPPED and not src.is_open


def test_absent_device_is_retried_with_growing_pauses_then_streams():
    seen = []
    src = Scripted(absent=4)
    cfg = dataclasses.replace(FAST, reconnect_first_s=0.1, reconnect_max_s=0.8)
    acq = Acquisition(src, on_status=seen.append, config=cfg).start()
    take(acq, 1)
    acq.stop()
    pauses = [float(s.message.split("Retrying in ")[1].split(" s")[0])
              for s in seen if s.state == State.RECONNECTING and "Retrying in" in s.message]
    assert pauses == [0.1, 0.2, 0.4, 0.8]            # backoff, doubling up to the maximum
    assert all("not found" in s.message for s in seen if "Retrying in" in s.message)
    assert acq.status().reconnects == 0              # it had never streamed yet


def test_lost_device_is_reported_and_reconnected_with_ids_continuing():
    seen = []
    src = Scripted(lose_after=20, absent=0)
    acq = Acquisition(src, on_status=seen.append, config=FAST).start()
    frames = []
    wait_for(lambda: frames.append(acq.wait_frame(0.1)) or
             any(f is not None and f.id > 25 for f in frames), "frames after the reconnect")
    acq.stop()
    states = [s.state for s in seen]
    lost = states.index(State.RECONNECTING, 1)
    assert State.STREAMING in states[lost:]
    assert "unplugged" in seen[lost].message
    assert acq.status().reconnects == 1
    ids = [f.id for f in frames if f is not None]
    assert ids == sorted(ids) and max(ids) > 25
    for s in seen:                                   # plain values only cross to the GUI
        for v in dataclasses.astuple(s):
            assert isinstance(v, (int, float, str))


def test_bad_setup_fails_once_with_its_message_and_the_caller_keeps_running():
    seen = []
    src = Scripted(fail_open="GenTL producer /x/broken.cti cannot be loaded.")
    acq = Acquisition(src, on_status=seen.append, config=FAST).start()
    wait_for(lambda: not acq.running, "the acquisition to give up")
    assert acq.wait_frame(timeout=1.0) is None
    assert len(src.open_attempts) == 1
    assert seen[-1].state == State.FAILED and "broken.cti" in seen[-1].message


def test_finite_source_finishes_and_waiters_wake_up():
    acq = Acquisition(Scripted(count=5), config=FAST).start()
    got = []
    waiter = threading.Thread(target=lambda: got.append(
        [f for f in iter(lambda: acq.wait_frame(timeout=3600.0), None)]))
    waiter.start()
    waiter.join(60.0)                                # woken by the end, not by its timeout
    assert not waiter.is_alive()
    assert acq.status().state == State.FINISHED and len(got[0]) <= 5


def test_a_failing_status_listener_does_not_stop_the_camera():
    def listener(status):
        raise RuntimeError("GUI bug")
    acq = Acquisition(Scripted(), on_status=listener, config=FAST).start()
    assert len(take(acq, 10)) == 10
    acq.stop()


def test_consumer_on_another_thread_sees_frames_in_order():
    acq = Acquisition(Scripted(period=0.002), config=FAST).start()
    got = []
    t = threading.Thread(target=lambda: got.extend(take(acq, 20)))
    t.start()
    t.join()
    acq.stop()
    assert len(got) == 20 and [f.id for f in got] == sorted({f.id for f in got})
