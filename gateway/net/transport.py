"""How the relay reaches an upstream: an `open_connection`-style interface the TLCP transport also fits."""

from __future__ import annotations

import asyncio
import errno
import math
import os
import socket
from dataclasses import dataclass
from typing import Protocol

from gateway.errors import UpstreamError


class UpstreamUnreachable(UpstreamError):
    """No connection could be made: the request never left, so trying elsewhere is always safe."""

    kind = "upstream_unreachable"


@dataclass(frozen=True)
class UpstreamTarget:
    name: str
    host: str
    port: int
    role: str = "primary"
    path: str = "/fsi/api/rsfComIfsService/callService"
    connect_timeout: float = 3.0
    #: a connection whose data goes unacknowledged this long, or that stays silent this long while idle, is
    #: dead (TCP_USER_TIMEOUT with keepalive): a silent drop is noticed in seconds, not at the HIS's deadline
    dead_after: float = 1.5

    def path_for(self, infno: str) -> str:
        return self.path.replace("{infno}", infno)


class Transport(Protocol):
    async def open(self, target: UpstreamTarget) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """Connect (and, for TLCP, handshake) within target.connect_timeout or raise UpstreamUnreachable."""
        ...


class TcpTransport:
    """Plain TCP: unit tests and the development flag only; the 专网 link is TLCP."""

    async def open(self, target: UpstreamTarget) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        try:
            # asyncio.timeout, not wait_for: Python 3.11's wait_for drops a cancellation that arrives as the
            # connect completes, and the probe loop then outlived the daemon's stop (a hang at shutdown).
            async with asyncio.timeout(target.connect_timeout):
                reader, writer = await asyncio.open_connection(target.host, target.port, limit=2**20)
        except TimeoutError:
            raise UpstreamUnreachable(
                f"{target.name} ({target.host}:{target.port}): connect timed out after {target.connect_timeout}s"
            ) from None
        except OSError as exc:
            raise UpstreamUnreachable(f"{target.name} ({target.host}:{target.port}): {os_reason(exc)}") from None
        watch_liveness(writer, target.dead_after)
        return reader, writer


def watch_liveness(writer: asyncio.StreamWriter, dead_after: float) -> None:
    """Let the kernel tell a dead upstream connection: data unacknowledged for `dead_after` seconds, or no answer
    to keepalive probes sent after a second of silence, ends it with ETIMEDOUT (readers see it at once).

    Nothing here affects a slow platform on a live link: its kernel acknowledges our bytes and the probes at
    once, however long the answer takes."""
    sock = writer.get_extra_info("socket")
    if sock is None:
        return
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, max(1, math.ceil(dead_after)))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, max(1, round(dead_after * 1000)))


def os_reason(exc: OSError) -> str:
    """The system's words for a socket error ("Connection refused"): asyncio's own text for a refused connect
    ("Connect call failed ('10.0.0.1', 9443)") does not say what happened."""
    return os.strerror(exc.errno) if exc.errno else str(exc)


def link_dead(exc: BaseException) -> bool:
    """Is this the kernel saying the connection's peer stopped answering (not a reset, not our own timeout)?"""
    return isinstance(exc, OSError) and exc.errno == errno.ETIMEDOUT
