"""Idle upstream connections kept for reuse (HTTP keep-alive over TCP now, over TLCP next).

Reuse saves a connect per request (and with TLCP a full SM2 handshake), but a reused connection can have been
closed by the platform while idle; a request written into it may or may not have been read. So the caller
decides per request whether reuse is acceptable (safe transactions only), and stale connections are weeded
out before use: peer EOF seen, or idle longer than `idle_timeout` (set below the platform's own keep-alive).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from gateway.net.transport import Transport, UpstreamTarget


@dataclass
class Connection:
    target: UpstreamTarget
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    reused: bool = False
    idle_since: float = field(default_factory=time.monotonic)

    def alive(self, now: float, idle_timeout: float) -> bool:
        return not self.reader.at_eof() and not self.writer.is_closing() and now - self.idle_since < idle_timeout

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self.writer.wait_closed()


class KeepAlivePool:
    def __init__(self, transport: Transport, *, max_idle: int = 8, idle_timeout: float = 20.0) -> None:
        self.transport = transport
        self.max_idle = max_idle
        self.idle_timeout = idle_timeout
        self._idle: dict[str, deque[Connection]] = {}
        self.opened = 0
        self.reuses = 0
        self._adopted: set[asyncio.Task[None]] = set()

    def adopt(self, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` (a connect nobody waits for any more, settling in the background) until close()."""
        task = asyncio.create_task(work, name="connect-settling")
        self._adopted.add(task)
        task.add_done_callback(self._adopted.discard)

    def take_idle(self, target: UpstreamTarget) -> Connection | None:
        """An idle live connection to `target`, if one is kept (the dead ones met on the way are closed in the
        background): no await, so the common keep-alive request needs no task to get its connection."""
        idle = self._idle.get(target.name)
        now = time.monotonic()
        while idle:
            conn = idle.pop()  # most recently used first: least likely to have been closed
            if conn.alive(now, self.idle_timeout):
                conn.reused = True
                self.reuses += 1
                return conn
            self.adopt(conn.close())
        return None

    async def get(self, target: UpstreamTarget, *, reuse: bool) -> Connection:
        """An idle live connection when `reuse` allows one, else a new one (UpstreamUnreachable on failure)."""
        if reuse and (conn := self.take_idle(target)) is not None:
            return conn
        reader, writer = await self.transport.open(target)
        self.opened += 1
        return Connection(target, reader, writer)

    async def put(self, conn: Connection, *, keep: bool) -> None:
        """Return a connection after a complete exchange; `keep` is the response's keep-alive."""
        idle = self._idle.setdefault(conn.target.name, deque())
        if not keep or len(idle) >= self.max_idle or conn.reader.at_eof():
            await conn.close()
            return
        conn.reused = False
        conn.idle_since = time.monotonic()
        idle.append(conn)

    async def close(self) -> None:
        for task in list(self._adopted):
            task.cancel()
        await asyncio.gather(*self._adopted, return_exceptions=True)
        for idle in self._idle.values():
            while idle:
                await idle.pop().close()
