"""The local listeners as parts: the admin face (metrics, status), the control socket (ops operations that change
state), and the HIS API on its Unix socket and TCP listeners, which drains in-flight requests on stop."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import structlog

from gateway.api.accesslog import AccessLog
from gateway.api.admin import AdminApi
from gateway.api.app import HisApi
from gateway.api.control import ControlApi
from gateway.app.assembly import completion_values, http_limits
from gateway.app.parts import Deadline
from gateway.config import Config
from gateway.health.metrics import Metrics
from gateway.health.recent import Recent
from gateway.http1 import Limits
from gateway.http1.listen import close_listener, somaxconn, start_tcp, start_unix
from gateway.http1.server import Http1Server
from gateway.policy.gate import PolicyGate
from gateway.relay.durable import DurableRelay

log = structlog.get_logger("gateway.daemon")


def access_log(cfg: Config, metrics: Metrics) -> AccessLog:
    a = cfg.logging.access
    return AccessLog(
        a.to,
        path=a.path,
        max_bytes=a.max_bytes,
        backups=a.backups,
        syslog_socket=a.syslog_socket,
        on_drop=metrics.access_log_dropped.inc,
    )


class AdminListener:
    name = "admin"

    def __init__(self, cfg: Config, metrics: Metrics, status: Callable[[], dict[str, Any]]) -> None:
        self.cfg, self.api = cfg, AdminApi(metrics, status)
        self._server: asyncio.Server | None = None
        self.address: tuple[str, int] | None = None

    async def start(self) -> None:
        server = Http1Server(self.api.handle, self.api.refuse, Limits())
        self._server = await start_tcp(server, self.cfg.admin.host, self.cfg.admin.port)
        self.address = self._server.sockets[0].getsockname()[:2]

    async def stop(self) -> None:
        if self._server is not None:
            await close_listener(self._server, None)


class ControlListener:
    name = "control"

    def __init__(
        self,
        path: Path,
        resolve: Callable[[str, str, str], Awaitable[dict[str, Any]]],
        reload_policy: Callable[[], dict[str, Any]],
        reconcile: Callable[[str], Awaitable[dict[str, Any]]],
    ) -> None:
        self.path = path
        self.api = ControlApi(resolve, reload_policy=reload_policy, reconcile=reconcile)
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        server = Http1Server(self.api.handle, self.api.refuse, Limits())
        self._server = await start_unix(server, self.path, mode=0o600)

    async def stop(self) -> None:
        if self._server is not None:
            await close_listener(self._server, self.path)


class HisListeners:
    """The HIS API's listeners. Stopping closes them first, so no new work arrives, then waits for the requests
    in flight until the deadline."""

    name = "his-api"

    def __init__(
        self,
        cfg: Config,
        relay: DurableRelay,
        *,
        metrics: Metrics,
        recent: Recent,
        gate: PolicyGate,
        sock: socket.socket | None,
        deadline: Deadline,
    ) -> None:
        self.cfg, self.sock, self.deadline = cfg, sock, deadline
        self.api = api = HisApi(
            relay,
            cfg.api.paths,
            default_timeout=cfg.api.default_timeout,
            max_timeout=cfg.api.max_timeout,
            metrics=metrics,
            recent=recent,
            gate=gate,
            completion_values=completion_values(cfg),
            signs_in=cfg.session is not None and cfg.session.sign_in,
            access=access_log(cfg, metrics),
        )
        self.metrics = metrics
        self.http = Http1Server(
            api.handle, api.refuse, http_limits(cfg), peer_error_responder=api.refuse_peer, early_responder=api.early
        )
        self._servers: list[tuple[asyncio.Server, Path | None]] = []
        #: where the TCP listeners are (the port the kernel chose for a configured 0)
        self.tcp_addresses: list[tuple[str, int]] = []

    def configure(self, cfg: Config) -> None:
        """The settings a reload applies (marked LIVE): limits for new connections, paths, deadlines, where the
        access log goes."""
        self.http.limits = http_limits(cfg)
        if cfg.logging.access != self.cfg.logging.access:
            previous, self.api.access = self.api.access, access_log(cfg, self.metrics)
            previous.close()
        self.cfg = cfg
        self.api.configure(
            cfg.api.paths,
            cfg.api.default_timeout,
            cfg.api.max_timeout,
            completion_values(cfg),
            signs_in=cfg.session is not None and cfg.session.sign_in,
        )

    async def start(self) -> None:
        try:
            await self._listen()
        except BaseException:
            await self._close()
            raise

    async def _listen(self) -> None:
        cfg = self.cfg
        backlog = cfg.api.backlog
        cap = somaxconn()
        if cap is not None and cap < backlog:
            log.warning("api_backlog_capped", backlog=backlog, somaxconn=cap, fix="raise sysctl net.core.somaxconn")
        unix = await start_unix(
            self.http,
            cfg.api_socket,
            mode=cfg.api.socket_mode,
            group=cfg.api.socket_group,
            sock=self.sock,
            backlog=backlog,
        )
        # A handed-over socket belongs to systemd: never unlink it on stop.
        self._servers.append((unix, None if self.sock else cfg.api_socket))
        for tcp in cfg.api.tcp:
            srv = await start_tcp(self.http, tcp.host, tcp.port, backlog=backlog)
            self._servers.append((srv, None))
            self.tcp_addresses.append(srv.sockets[0].getsockname()[:2])
            log.info("api_tcp_listening", address=f"{tcp.host}:{self.tcp_addresses[-1][1]}")

    async def _close(self) -> None:
        for srv, path in self._servers:
            await close_listener(srv, path)
        self._servers = []

    async def stop(self) -> None:
        await self._close()
        drained = await self.http.drain(self.deadline.at)
        log.info("stopped", drained=drained, in_flight_left=self.http.in_flight)
        self.api.access.close()
