"""The daemon's stop ends its background tasks within a bound, whatever they do with a cancellation.

A reload storm once left a daemon running after SIGTERM: Python 3.11's wait_for returns the result instead of
raising when a cancellation meets a connect that has just completed, so the upstream probe loop carried on and
the stop waited for it for ever."""

from __future__ import annotations

import asyncio
import sys

from structlog.testing import capture_logs

from gateway.tasks import end_tasks

from conftest import until


async def test_a_task_whose_wait_for_swallowed_the_cancel_is_cancelled_again() -> None:
    loop = asyncio.get_running_loop()
    connected: asyncio.Future[str] = loop.create_future()
    rounds = 0
    asleep = asyncio.Event()

    async def probe_loop() -> None:
        nonlocal rounds
        while True:  # the shape of UpstreamFailover.probe_loop
            rounds += 1
            await asyncio.wait_for(connected if rounds == 1 else asyncio.sleep(0.01), 3)
            asleep.set()
            await asyncio.sleep(5)

    task = asyncio.create_task(probe_loop(), name="probes")
    await asyncio.sleep(0)
    connected.set_result("writer")  # the connect completes ...
    task.cancel()  # ... in the same loop turn as the stop's cancel
    await until(lambda: task.done() or asleep.is_set())  # the cancel ended it, or it went on to its next sleep
    if sys.version_info < (3, 12):
        assert not task.done(), "wait_for swallowed the cancel: the loop went on to its next sleep"
    with capture_logs() as logs:
        await end_tasks([task], time_limit=3)
    assert task.cancelled()
    # Cancelled again, not left behind at the time limit (that would be logged as tasks_did_not_stop).
    assert [e["event"] for e in logs] == []


async def test_a_task_that_will_not_stop_is_named_and_left_behind_at_the_limit() -> None:
    hold = True

    async def stubborn() -> None:
        while True:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                if not hold:
                    raise

    async def failed() -> None:
        raise RuntimeError("probe crashed earlier")

    hung = asyncio.create_task(stubborn(), name="stubborn")
    broken = asyncio.create_task(failed(), name="broken")
    await asyncio.sleep(0)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    with capture_logs() as logs:
        await end_tasks([hung, broken], time_limit=0.3)
    # It waited out the limit: the loop's timers never fire early (to within its clock resolution).
    assert loop.time() - t0 >= 0.3 - 1e-3
    events = {e["event"]: e for e in logs}
    assert events["tasks_did_not_stop"]["tasks"] == ["stubborn"]
    assert events["task_failed"]["task"] == "broken" and "probe crashed earlier" in events["task_failed"]["error"]
    hold = False  # the test's own cleanup: the loop closes with no task pending
    hung.cancel()
    await asyncio.gather(hung, return_exceptions=True)
