"""Ending background tasks at shutdown, within a bound, whatever they do with a cancellation."""

from __future__ import annotations

import asyncio
from typing import Any

import structlog

log = structlog.get_logger("gateway.tasks")


async def end_tasks(tasks: list[asyncio.Task[Any]], time_limit: float) -> None:
    """Cancel background tasks and wait for them, within `time_limit`. A task that swallowed its cancellation
    (Python 3.11's wait_for does so when the cancel meets a completing wait) is cancelled again; one still
    running at the limit is named in the log instead of holding the stop for ever. A task that had failed is
    logged, not raised: the stop goes on."""
    loop = asyncio.get_running_loop()
    end = loop.time() + time_limit
    pending = {t for t in tasks if not t.done()}
    for task in pending:
        task.cancel()
    while pending and loop.time() < end:
        _, pending = await asyncio.wait(pending, timeout=min(0.1, max(0.0, end - loop.time())))
        for task in pending:
            task.cancel()
    for task in tasks:
        if task.done() and not task.cancelled() and task.exception() is not None:
            log.error("task_failed", task=task.get_name(), error=repr(task.exception()))
    if pending:
        log.error("tasks_did_not_stop", tasks=sorted(t.get_name() for t in pending))
