"""How the relay reaches an upstream: an `open_connection`-style interface the TLCP transport also fits."""

from __future__ import annotations

import asyncio
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
            raise UpstreamUnreachable(f"{target.name} ({target.host}:{target.port}): {exc.strerror or exc}") from None
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return reader, writer
