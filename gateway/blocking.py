"""One thread that runs blocking calls (a COMMIT, an fsync) in order for the event loop.

The outbox and the audit log each hand one blocking call per group to a thread. Through
``loop.run_in_executor`` a round trip costs about 130 µs of CPU (a work item, a concurrent future chained to an
asyncio one, a pool check); a plain queue and one ``call_soon_threadsafe`` cost about 60 µs. On the relay's
path that is paid twice per group, so the executor is not used here.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

_Job = tuple[Callable[[], Any], asyncio.Future[Any]] | None


class BlockingWorker:
    """Calls run one at a time, in submission order, on a thread of their own."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def run(self, fn: Callable[[], T]) -> T:
        """`fn()` on the worker thread (started by the first call, bound to its loop); its result or its
        exception here."""
        if self._thread is None:
            self._loop = asyncio.get_running_loop()
            self._thread = threading.Thread(target=self._serve, name=self.name, daemon=True)
            self._thread.start()
        assert self._loop is not None
        fut: asyncio.Future[T] = self._loop.create_future()
        self._jobs.put((fn, fut))
        return await fut

    def stop(self) -> None:
        """Finish the calls already queued, then end the thread (blocks until it has)."""
        if self._thread is None:
            return
        self._jobs.put(None)
        self._thread.join()
        self._thread = None

    def _serve(self) -> None:
        assert self._loop is not None
        loop = self._loop
        while (job := self._jobs.get()) is not None:
            fn, fut = job
            try:
                result = fn()
            except BaseException as exc:  # noqa: BLE001 - every failure belongs to the caller
                _post(loop, _fail, fut, exc)
            else:
                _post(loop, _succeed, fut, result)


def _post(loop: asyncio.AbstractEventLoop, fn: Callable[..., None], *args: Any) -> None:
    with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting any more
        loop.call_soon_threadsafe(fn, *args)


def _succeed(fut: asyncio.Future[Any], result: Any) -> None:
    if not fut.done():  # the caller may have been cancelled meanwhile
        fut.set_result(result)


def _fail(fut: asyncio.Future[Any], exc: BaseException) -> None:
    if not fut.done():
        fut.set_exception(exc)
