"""Watch the 专网 interface and the routes to the upstreams through netlink events.

A link that goes down is noticed when the kernel says so (milliseconds), not when the next HIS request times
out. The monitor keeps the current state and calls back on every change; metrics and MQTT events hang off that.

The netlink sockets live on an event loop of their own, in a thread of their own: pyroute2 opens them as asyncio
datagram endpoints, which the stdlib loop accepts and uvloop does not (it opens only UDP), so the daemon's loop
may be either. Changes are handed to the daemon's loop (call_soon_threadsafe), where on_change runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.machinery
import importlib.util
import ipaddress
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

from gateway.tasks import end_tasks


def _import_rtnetlink_only() -> None:
    """pyroute2's package __init__ imports every netlink family it supports (conntrack, NDB, IPDB, nl80211,
    plan9 …: 228 modules, 13 MiB resident in a bare interpreter); the link watch needs rtnetlink alone.

    The package is registered bare while the modules used here load, then taken out of sys.modules again, so
    a later ``import pyroute2`` anywhere else in the process runs the real __init__ and finds these modules
    already loaded. tests/test_link.py runs the monitor against real netlink, so a pyroute2 release that
    moves these modules fails there, not in the field."""
    if "pyroute2" in sys.modules:
        return
    spec = importlib.util.find_spec("pyroute2")
    if spec is None or spec.submodule_search_locations is None:
        raise ImportError("pyroute2 is not installed")
    bare = importlib.util.module_from_spec(importlib.machinery.ModuleSpec("pyroute2", None, is_package=True))
    bare.__path__ = list(spec.submodule_search_locations)
    sys.modules["pyroute2"] = bare
    try:
        importlib.import_module("pyroute2.iproute.linux")
    finally:
        if sys.modules.get("pyroute2") is bare:
            del sys.modules["pyroute2"]


_import_rtnetlink_only()

from pyroute2.iproute.linux import AsyncIPRoute  # noqa: E402 - after the bare-package import above
from pyroute2.netlink.exceptions import NetlinkError  # noqa: E402
from pyroute2.netlink.rtnl import RTMGRP_IPV4_ROUTE, RTMGRP_IPV6_ROUTE, RTMGRP_LINK  # noqa: E402

log = structlog.get_logger("gateway.link")

IFF_UP = 0x1
IFF_LOWER_UP = 0x10000


@dataclass(frozen=True)
class LinkState:
    interface: str
    exists: bool
    up: bool  # administratively up and carrier present
    #: upstream address -> the interface its route leaves by (None: no route)
    routes: dict[str, str | None] = field(default_factory=dict)

    def route_ok(self, address: str) -> bool:
        return self.routes.get(address) == self.interface


class LinkMonitor:
    def __init__(
        self,
        interface: str,
        upstream_addresses: list[str],
        on_change: Callable[[LinkState, LinkState | None], None],
        *,
        netns: str | None = None,
    ) -> None:
        self.interface = interface
        self.addresses = [a for a in upstream_addresses if _is_ip(a)]
        self.on_change = on_change
        self.netns = netns
        #: the latest state (replaced whole from the monitor's thread, read from the daemon's loop)
        self.state: LinkState | None = None
        self._task: asyncio.Task[None] | None = None
        self._ipr: AsyncIPRoute | None = None  # queries
        self._events: AsyncIPRoute | None = None  # multicast events only: queries on it would eat them
        self._loop: asyncio.AbstractEventLoop | None = None  # the monitor's own, in its thread
        self._thread: threading.Thread | None = None
        self._caller: asyncio.AbstractEventLoop | None = None  # the daemon's

    def _socket(self) -> AsyncIPRoute:
        return AsyncIPRoute(netns=self.netns) if self.netns else AsyncIPRoute()

    async def start(self) -> LinkState:
        """Start the monitor's thread and loop; the state as first read."""
        self._caller = asyncio.get_running_loop()
        loop = self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=loop.run_forever, name="link-monitor", daemon=True)
        self._thread.start()
        try:
            return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self._start(), loop))
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        self._loop = self._thread = None
        with contextlib.suppress(Exception):
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self._stop(), loop))
        loop.call_soon_threadsafe(loop.stop)
        await asyncio.to_thread(thread.join, 10.0)
        if not thread.is_alive():
            loop.close()

    # -- on the monitor's loop ----------------------------------------------------------------------------------

    async def _start(self) -> LinkState:
        self._events = self._socket()
        await self._events.setup_endpoint()
        await self._events.bind(groups=RTMGRP_LINK | RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE)
        self._ipr = self._socket()
        await self._ipr.setup_endpoint()
        await self._refresh()
        self._task = asyncio.create_task(self._watch(), name="link-monitor")
        assert self.state is not None
        return self.state

    async def _stop(self) -> None:
        if self._task is not None:
            await end_tasks([self._task], 5.0)
        for sock in (self._ipr, self._events):
            if sock is not None:
                sock.close()

    async def _watch(self) -> None:
        assert self._events is not None
        while True:  # get() yields one batch of messages per call
            relevant = False
            async for msg in self._events.get():
                relevant |= msg["event"] in ("RTM_NEWLINK", "RTM_DELLINK", "RTM_NEWROUTE", "RTM_DELROUTE")
            if relevant:
                await self._refresh()

    async def _refresh(self) -> None:
        new = await self._read()
        old = self.state
        if new != old:
            self.state = new
            assert self._caller is not None
            self._caller.call_soon_threadsafe(self.on_change, new, old)

    async def _read(self) -> LinkState:
        assert self._ipr is not None
        exists, up = False, False
        for link in await _collect(await self._ipr.link("dump")):
            if link.get("ifname") == self.interface:
                flags = link["flags"]
                exists, up = True, bool(flags & IFF_UP) and bool(flags & IFF_LOWER_UP)
        routes: dict[str, str | None] = {}
        for address in self.addresses:
            routes[address] = await self._route_interface(address)
        return LinkState(self.interface, exists, up, routes)

    async def _route_interface(self, address: str) -> str | None:
        assert self._ipr is not None
        try:
            answer = await _collect(await self._ipr.route("get", dst=address))
        except NetlinkError:
            return None  # unreachable: no route at all
        for route in answer:
            oif = route.get("oif")
            if oif is None:
                continue
            names = [link.get("ifname") for link in await _collect(await self._ipr.link("get", index=oif))]
            return names[0] if names else None
        return None


async def _collect(result: Any) -> list[Any]:
    """pyroute2 answers dumps with an async generator and single gets with a list: take either."""
    if hasattr(result, "__aiter__"):
        return [item async for item in result]
    return list(result)


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True
