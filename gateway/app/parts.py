"""The daemon's parts: each long-lived piece has `start()` and `stop()`, and the daemon starts them in dependency
order on an AsyncExitStack, so they stop in reverse: also after a start that failed half-way, where only the parts
already started are stopped.

A part whose stop drains work (the HIS listeners, the relay) reads the time left from the shared `Deadline` that
the daemon sets when it begins to stop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from gateway.tasks import end_tasks

if TYPE_CHECKING:
    from gateway.app.events import EventSink
    from gateway.health.metrics import Metrics


class Part(Protocol):
    async def start(self) -> object: ...

    async def stop(self) -> None: ...


P = TypeVar("P", bound=Part)


class Deadline:
    """When the stop must be over (monotonic); set once the daemon begins to stop."""

    def __init__(self, grace: float = 10.0) -> None:
        self.at = time.monotonic() + grace

    def set(self, grace: float) -> None:
        self.at = time.monotonic() + grace

    def left(self, floor: float = 0.0) -> float:
        return max(floor, self.at - time.monotonic())


@dataclass(frozen=True)
class Common:
    """What the parts share: the figures, the event sink, the stop deadline."""

    metrics: Metrics
    events: EventSink
    deadline: Deadline


class Parts:
    """The started parts, to be stopped in reverse. `start` registers a part only once its own start returned:
    a part that fails in start has cleaned up after itself, and the ones before it are stopped by `stop`."""

    def __init__(self) -> None:
        self._stack = AsyncExitStack()
        self.names: list[str] = []

    async def start(self, part: P) -> P:
        await part.start()
        name = getattr(part, "name", type(part).__name__)
        self._stack.push_async_callback(self._stop, part, name)
        self.names.append(name)
        return part

    async def _stop(self, part: Part, name: str) -> None:
        self.names.remove(name)
        await part.stop()

    async def stop(self) -> None:
        await self._stack.aclose()


class TaskPart:
    """A background loop as a part: started as a task, cancelled (within the deadline) on stop."""

    def __init__(self, name: str, loop: Callable[[], Coroutine[Any, Any, None]], deadline: Deadline) -> None:
        self.name = name
        self._loop = loop
        self._deadline = deadline
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name=self.name)

    async def stop(self) -> None:
        if self._task is not None:
            await end_tasks([self._task], self._deadline.left(1.0))
            self._task = None
