"""The worker thread the outbox commits and the audit log fsyncs on: order, results, errors, stop."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from gateway.blocking import BlockingWorker


async def test_calls_run_in_order_on_one_other_thread() -> None:
    worker = BlockingWorker("test-worker")
    seen: list[tuple[int, str]] = []

    def job(i: int) -> int:
        time.sleep(0.001 * (5 - i))  # later jobs are quicker: order must still hold
        seen.append((i, threading.current_thread().name))
        return i * i

    try:
        results = await asyncio.gather(*(worker.run(lambda i=i: job(i)) for i in range(5)))
    finally:
        worker.stop()
    assert results == [0, 1, 4, 9, 16]
    assert [i for i, _ in seen] == [0, 1, 2, 3, 4]
    assert {name for _, name in seen} == {"test-worker"}
    assert threading.current_thread().name != "test-worker"


async def test_an_exception_reaches_its_caller_and_the_worker_goes_on() -> None:
    worker = BlockingWorker("test-worker")

    def fail() -> None:
        raise OSError(28, "No space left on device")

    try:
        with pytest.raises(OSError, match="No space left"):
            await worker.run(fail)
        assert await worker.run(lambda: "still serving") == "still serving"
    finally:
        worker.stop()


async def test_stop_finishes_what_was_queued() -> None:
    worker = BlockingWorker("test-worker")
    done: list[int] = []
    first = asyncio.ensure_future(worker.run(lambda: done.append(1)))
    await asyncio.sleep(0)  # the call is queued, its future not awaited yet
    await first
    pending = asyncio.ensure_future(worker.run(lambda: (time.sleep(0.05), done.append(2))))
    await asyncio.sleep(0)  # queued, as the first was
    await asyncio.to_thread(worker.stop)  # blocks until the thread ends: off the loop, so the result can land
    await pending
    assert done == [1, 2]


async def test_a_cancelled_caller_does_not_break_the_worker() -> None:
    worker = BlockingWorker("test-worker")
    try:
        started = threading.Event()
        slow = asyncio.ensure_future(worker.run(lambda: (started.set(), time.sleep(0.05))))
        assert await asyncio.to_thread(started.wait, 30)  # cancelled while the worker runs it
        slow.cancel()
        with pytest.raises(asyncio.CancelledError):
            await slow
        assert await worker.run(lambda: 42) == 42
    finally:
        worker.stop()
