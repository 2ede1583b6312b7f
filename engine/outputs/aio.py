"""One asyncio event loop on its own thread for every protocol server of the station
(asyncua and pymodbus are asyncio libraries). The scoring thread and the GUI thread only
hand work to it (call_soon_threadsafe): they never wait on the network."""
from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from typing import Any, Callable, Coroutine

log = logging.getLogger("inspect.outputs")


class LoopThread:
    def __init__(self, name: str = "line outputs"):
        self.name = name
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()
        self._started.wait(5.0)              # creating a loop takes microseconds

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self.loop = loop
        self._started.set()
        try:
            loop.run_forever()
        finally:
            try:
                pending = asyncio.all_tasks(loop)
                for t in pending:
                    t.cancel()
                if pending:
                    loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()

    @property
    def running(self) -> bool:
        return self.loop is not None and self.loop.is_running()

    def call(self, fn: Callable[..., Any], *args) -> None:
        """Run fn(*args) on the loop soon; never waits (dropped when the loop is gone)."""
        loop = self.loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(fn, *args)
            except RuntimeError:             # closed between the check and the call
                pass

    def submit(self, coro: Coroutine) -> concurrent.futures.Future:
        """Run a coroutine on the loop; the caller may wait on the future (tests, REST)."""
        if self.loop is None:
            coro.close()
            raise RuntimeError("the outputs' event loop is not running")
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def stop(self, timeout: float = 5.0) -> bool:
        loop, thread = self.loop, self._thread
        if loop is None or thread is None:
            return True
        self.call(loop.stop)
        thread.join(timeout)
        self._thread = None
        self.loop = None
        return not thread.is_alive()
