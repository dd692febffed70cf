"""Listening sockets for an Http1Server: a Unix socket with owner/mode/group, or TCP."""

from __future__ import annotations

import asyncio
import contextlib
import grp
import os
import socket
import stat
import struct
from pathlib import Path

from gateway.errors import GatewayError
from gateway.http1.messages import Peer
from gateway.http1.server import Http1Server

_UCRED = struct.Struct("3i")
#: asyncio's own default: too small for a burst of HIS connections, kept for listeners nobody bursts on
DEFAULT_BACKLOG = 100
_SOMAXCONN = Path("/proc/sys/net/core/somaxconn")


def somaxconn() -> int | None:
    """The kernel's cap on a listen backlog (listen() silently lowers a larger one), or None if unknown."""
    try:
        return int(_SOMAXCONN.read_text())
    except (OSError, ValueError):
        return None


class ListenError(GatewayError):
    kind = "listen"


def unix_peer(writer: asyncio.StreamWriter) -> Peer:
    sock = writer.get_extra_info("socket")
    if sock is None:
        return Peer()
    try:
        pid, uid, gid = _UCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size))
    except OSError:
        return Peer()
    return Peer(uid=uid, gid=gid, pid=pid)


def tcp_peer(writer: asyncio.StreamWriter) -> Peer:
    addr = writer.get_extra_info("peername")
    if isinstance(addr, tuple) and len(addr) >= 2:
        return Peer(address=f"{addr[0]}:{addr[1]}")
    return Peer()


def _remove_stale_socket(path: Path) -> None:
    """A socket file left by a killed process blocks bind(); remove it, but never one still served."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise ListenError(f"{path} exists and is not a socket; refusing to replace it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(0.5)
        probe.connect(str(path))
    except OSError:
        path.unlink()
    else:
        raise ListenError(f"{path} is in use by another running process")
    finally:
        probe.close()


async def start_unix(
    server: Http1Server,
    path: Path,
    *,
    mode: int = 0o660,
    group: str | None = None,
    sock: socket.socket | None = None,
    backlog: int = DEFAULT_BACKLOG,
) -> asyncio.Server:
    """Listen on a Unix socket. With `sock` (systemd socket activation) the socket is used as handed over,
    except its backlog: asyncio calls listen() again, so `backlog` applies to it too."""

    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.serve(reader, writer, unix_peer(writer))

    if sock is not None:
        return await asyncio.start_unix_server(on_client, sock=sock, limit=2**20, backlog=backlog)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_socket(path)
    # Bind under a restrictive umask so the socket is never briefly reachable by everyone.
    old = os.umask(0o177)
    try:
        srv = await asyncio.start_unix_server(on_client, path=str(path), limit=2**20, backlog=backlog)
    finally:
        os.umask(old)
    if group is not None:
        try:
            gid = grp.getgrnam(group).gr_gid
        except KeyError as exc:
            srv.close()
            raise ListenError(f"socket group {group!r} does not exist on this host") from exc
        os.chown(path, -1, gid)
    os.chmod(path, mode)
    return srv


async def start_tcp(server: Http1Server, host: str, port: int, *, backlog: int = DEFAULT_BACKLOG) -> asyncio.Server:
    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.serve(reader, writer, tcp_peer(writer))

    try:
        return await asyncio.start_server(on_client, host, port, limit=2**20, reuse_address=True, backlog=backlog)
    except OSError as exc:
        raise ListenError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc


#: loop turns for a connection accepted just before the listener stops to get its transport
_ATTACH_TURNS = 3


async def close_listener(srv: asyncio.Server, path: Path | None = None) -> None:
    """Stop accepting, then close. asyncio (3.11) builds the transport of an accepted connection a loop turn
    after the accept, and if the server is closed by then the build fails without a word: the connection stays
    open with no one to answer it, and is reset when the process exits (a restart under load lost requests so).
    So the listening sockets leave the selector first, the connections already accepted get their turns, and
    only then is the server closed; under socket activation whatever is still queued waits for the next process."""
    loop = asyncio.get_running_loop()
    for sock in srv.sockets:
        loop.remove_reader(sock.fileno())
    for _ in range(_ATTACH_TURNS):
        await asyncio.sleep(0)
    srv.close()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(srv.wait_closed(), 0.5)
    if path is not None:
        path.unlink(missing_ok=True)  # noqa: ASYNC240 - one unlink at shutdown, nothing to await for
