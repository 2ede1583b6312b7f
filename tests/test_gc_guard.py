"""Reference cycles are collected on the GUI thread, never on a worker (app/gc_guard.py)."""
import gc
import threading

from app_fixtures import wait_until


class Cycle:
    freed_on: list = []

    def __init__(self):
        self.me = self                      # only the cyclic collector can free this

    def __del__(self):
        Cycle.freed_on.append(threading.current_thread().name)


def test_a_cycle_made_garbage_is_freed_on_the_gui_thread_while_a_worker_allocates(qtbot):
    from app import gc_guard
    guard = gc_guard.install()
    assert guard is not None and gc_guard.install() is guard       # one per application
    assert not gc.isenabled()
    Cycle.freed_on.clear()
    for _ in range(20):
        Cycle()

    def churn():                            # would trip generation 0 thousands of times
        junk = []
        for i in range(200_000):
            junk.append([i])
            if len(junk) > 1000:
                junk.clear()
    worker = threading.Thread(target=churn, name="worker")
    worker.start()
    worker.join()
    assert Cycle.freed_on == []             # the worker collected nothing
    kept = [[i] for i in range(5000)]       # allocations that make a collection due
    wait_until(qtbot, lambda: len(Cycle.freed_on) == 20, 5, "the timer's collection")
    assert set(Cycle.freed_on) == {threading.main_thread().name} and len(kept) == 5000
