"""app/tasks.py: the one bridge. Worker errors reach the one handler (log file + user) and
never kill the app; callbacks run on the GUI thread; cancellation is not an error."""
import logging
import threading
import time

import pytest

from app.tasks import ErrorHandler, Relay, Tasks
from engine.errors import InspectError
from engine.train import TrainingCancelled
from app_fixtures import wait_until


@pytest.fixture
def bridge(qtbot, tmp_path):
    from app.main import setup_logging
    log_path = setup_logging(tmp_path)
    errors = ErrorHandler()
    shown = []
    errors.shown.connect(lambda where, msg, serious: shown.append((where, msg, serious)))
    tasks = Tasks(errors)
    yield tasks, shown, log_path
    tasks.shutdown(10)


def test_worker_exception_reaches_the_handler_and_the_app_goes_on(qtbot, bridge):
    tasks, shown, log_path = bridge

    def boom(progress, should_stop):
        raise ZeroDivisionError("a bug in a worker")

    failed = []
    tasks.run("Broken job", boom, on_failed=failed.append)
    wait_until(qtbot, lambda: shown and failed, 10, "the error report")
    where, msg, serious = shown[0]
    assert where == "Broken job" and serious
    assert "ZeroDivisionError" in msg and "log file" in msg
    for h in logging.getLogger().handlers:
        h.flush()
    text = log_path.read_text()
    assert "Traceback" in text and "a bug in a worker" in text
    # the app still works: the next job runs and its result arrives on the GUI thread
    got = []
    tasks.run("Good job", lambda p, s: threading.current_thread() is threading.main_thread(),
              on_done=lambda r: got.append((r, threading.current_thread() is threading.main_thread())))
    wait_until(qtbot, lambda: got, 10, "the second job")
    assert got == [(False, True)]            # ran on a worker, result delivered on the GUI thread


def test_user_errors_are_shown_as_written_and_progress_arrives(qtbot, bridge):
    tasks, shown, _ = bridge
    progress = []

    def job(p, s):
        p(0.5, "half way")
        raise InspectError("The camera cable is unplugged.")

    tasks.run("Camera", job, on_progress=lambda f, m: progress.append((f, m)))
    wait_until(qtbot, lambda: shown, 10, "the message")
    assert shown[0][1] == "The camera cable is unplugged."
    assert progress == [(0.5, "half way")]


def test_cancel_sets_the_flag_and_is_not_reported_as_an_error(qtbot, bridge):
    tasks, shown, _ = bridge
    finished = []

    def long_job(p, should_stop):
        while not should_stop():
            time.sleep(0.01)
        raise TrainingCancelled("stopped")

    job = tasks.run("Training", long_job, on_finished=lambda: finished.append(1))
    qtbot.wait(50)
    job.cancel()
    wait_until(qtbot, lambda: finished, 10, "the cancelled job to finish")
    assert job.cancelled and not shown


def test_a_failing_gui_callback_is_reported_not_fatal(qtbot, bridge):
    tasks, shown, _ = bridge
    tasks.run("Job", lambda p, s: 1, on_done=lambda r: 1 / 0)
    wait_until(qtbot, lambda: shown, 10, "the report")
    assert "ZeroDivisionError" in shown[0][1]


def test_relay_delivers_on_the_gui_thread(qtbot):
    got = []
    relay = Relay(lambda v: got.append((v, threading.current_thread() is threading.main_thread())))
    t = threading.Thread(target=relay.send, args=(42,))
    t.start()
    t.join()
    wait_until(qtbot, lambda: got, 5, "the relayed value")
    assert got == [(42, True)]


def test_pipeline_error_costs_a_frame_not_the_line(qtbot):
    """A scoring fault is reported and the scoring thread keeps taking frames."""
    import numpy as np
    from engine.line import Pipeline
    from engine.types import Frame

    class Feed:
        def __init__(self):
            self.seq = -1
        def start(self): pass
        def stop(self): pass
        def rate_hz(self): return 0.0
        def next_frame(self, timeout):
            time.sleep(0.01)
            self.seq += 1
            return Frame(self.seq, time.monotonic(), time.time(), "fake",
                         np.zeros((32, 32, 3), np.uint8))

    errors, results = [], []
    p = Pipeline(Feed(), "st", on_result=results.append, on_error=lambda w, e: errors.append(e))

    class BadScorer:
        model_id = "bad"
        def score(self, frames):
            raise RuntimeError("scoring broke")

    p._scorer, p._spec = BadScorer(), None
    p.start()
    wait_until(qtbot, lambda: len(errors) >= 2, 10, "two reported errors")
    assert p.running
    p._scorer = None                         # the fault goes away: frames flow again
    wait_until(qtbot, lambda: results, 10, "frames after the fault")
    p.stop()
    assert p.join(10) and not p.running and isinstance(errors[0], RuntimeError)
