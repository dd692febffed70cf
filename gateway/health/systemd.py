"""systemd integration: sd_notify (READY, STATUS, WATCHDOG, STOPPING, RELOADING) and socket activation.

Our own few lines rather than a library: the protocol is one datagram per message and an environment
variable or two, and the PyPI `sdnotify` package (last release 2017) handles neither abstract-namespace
sockets nor socket activation.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Mapping

import structlog

log = structlog.get_logger("gateway.systemd")

SD_LISTEN_FDS_START = 3


class Notifier:
    """Sends state changes to systemd when run under it (NOTIFY_SOCKET set); does nothing otherwise."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        path = env.get("NOTIFY_SOCKET", "")
        # '@' marks the abstract namespace, which the socket API spells with a leading NUL.
        self.address = "\0" + path[1:] if path.startswith("@") else path
        self.watchdog_interval = self._watchdog(env)

    @staticmethod
    def _watchdog(env: Mapping[str, str]) -> float | None:
        usec = env.get("WATCHDOG_USEC")
        pid = env.get("WATCHDOG_PID")
        if not usec or not usec.isdigit() or (pid and pid != str(os.getpid())):
            return None
        return int(usec) / 1_000_000

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def notify(self, message: str) -> bool:
        if not self.address:
            return False
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            try:
                sock.sendto(message.encode("utf-8"), self.address)
            except OSError as exc:
                log.warning("sd_notify_failed", error=exc.strerror)
                return False
        return True

    def ready(self, status: str) -> bool:
        return self.notify(f"READY=1\nSTATUS={status}\nMAINPID={os.getpid()}")

    def status(self, status: str) -> bool:
        return self.notify(f"STATUS={status}")

    def stopping(self) -> bool:
        return self.notify("STOPPING=1")

    async def watchdog_loop(self) -> None:
        """Ping from the event loop itself: a loop stuck in a blocking call stops pinging and is restarted."""
        if self.watchdog_interval is None:
            return
        while True:
            self.notify("WATCHDOG=1")
            await asyncio.sleep(self.watchdog_interval / 3)


def listen_fds(env: Mapping[str, str] | None = None, *, unset: bool = True) -> dict[str, socket.socket]:
    """Sockets systemd passed us (socket activation), by FileDescriptorName (default "fd3", "fd4" …)."""
    env = os.environ if env is None else env
    if env.get("LISTEN_PID") != str(os.getpid()):
        return {}
    count = int(env.get("LISTEN_FDS", "0") or 0)
    names = (env.get("LISTEN_FDNAMES") or "").split(":") if env.get("LISTEN_FDNAMES") else []
    out: dict[str, socket.socket] = {}
    for i in range(count):
        fd = SD_LISTEN_FDS_START + i
        os.set_inheritable(fd, False)
        name = names[i] if i < len(names) and names[i] else f"fd{fd}"
        out[name] = socket.socket(fileno=fd)
    if unset and isinstance(env, dict | os._Environ):
        # Children must not believe the sockets are theirs.
        for key in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
            env.pop(key, None)
    return out
