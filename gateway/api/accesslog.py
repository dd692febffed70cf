"""The access log: one line per HIS request, so ops can grep a msgid and see what its HIS was answered.

A line is ten fields separated by single spaces, `-` where a field has no value, in this order:

    time client peer infno msgid status infcode gateway_error upstream ms
    2026-12-05T14:05:44.828+08:00 his-outpatient uid=1500,gid=1500,pid=58 1101 H44030000001202612051405440001 \
        200 0 - province-primary 6.0     (one line; broken here)

time is local with its offset; client is the policy client (`-` without a policy); status is the HTTP status the
HIS got (200 for platform-shaped refusals too); infcode is the platform's (or -1 for a refusal in platform
shape); gateway_error is what ybgate decided (docs/his-integration.md). No field carries patient data: envelope
contents never reach this log.

Lines go through a bounded queue to a thread of their own (the stdlib's QueueListener), so a slow journal or
disk never stalls the event loop; when the queue is full a line is dropped and counted, never waited for.
"""

from __future__ import annotations

import contextlib
import logging
import logging.handlers
import queue
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal

SYSLOG_IDENT = "ybgate-access"
QUEUE_LINES = 10_000
SEND_TIMEOUT = 1.0

Sink = Literal["journal", "file", "stderr", "off"]


@dataclass(frozen=True)
class AccessEntry:
    client: str | None
    peer: str
    infno: str | None
    msgid: str | None
    status: int
    infcode: int | str | None
    gateway_error: str | None
    upstream: str | None
    ms: float

    def line(self, when: datetime | None = None) -> str:
        stamp = (when or datetime.now().astimezone()).isoformat(timespec="milliseconds")
        fields = (
            stamp,
            self.client,
            self.peer,
            self.infno,
            self.msgid,
            self.status,
            self.infcode,
            self.gateway_error,
            self.upstream,
            f"{self.ms:.1f}",
        )
        return " ".join(_field(f) for f in fields)


def _field(value: object) -> str:
    if value is None or value == "":
        return "-"
    text = str(value)
    # a field is one token: nothing a caller sends can split a line or forge a field. isprintable() is false for
    # every separator and control character but the ASCII space, so a field without either is one already (the
    # line is on every request's path: the character walk is only for the rare field that needs it)
    if text.isprintable() and " " not in text:
        return text
    return "".join(c if c.isprintable() and not c.isspace() else "_" for c in text)


def _record(line: str) -> logging.LogRecord:
    """A record carrying a finished line and what the handlers read of it. Logger.info would also look up the
    caller's frame, the thread and the process for every line, which no handler here prints."""
    record = logging.LogRecord.__new__(logging.LogRecord)
    record.__dict__.update(
        name=SYSLOG_IDENT, msg=line, args=None, levelname="INFO", levelno=logging.INFO,
        exc_info=None, exc_text=None, stack_info=None,
    )  # fmt: skip
    return record


class _Failing(logging.Handler):
    """Counts a line its target could not take (a journal gone, a full disk) instead of the stdlib's traceback on
    stderr for every one."""

    on_fail: Callable[[], None] | None = None

    def handleError(self, record: logging.LogRecord) -> None:
        if self.on_fail is not None:
            self.on_fail()


class _Syslog(_Failing, logging.handlers.SysLogHandler):
    def createSocket(self) -> None:
        super().createSocket()
        sock = getattr(self, "socket", None)  # set by createSocket; typeshed does not declare it
        if sock is not None:
            # a journal that stops reading must not hold the writer thread, and with it shutdown, for ever
            sock.settimeout(SEND_TIMEOUT)


class _File(_Failing, logging.handlers.RotatingFileHandler):
    pass


class _Stderr(_Failing, logging.StreamHandler):  # type: ignore[type-arg]
    pass


class _Listener(logging.handlers.QueueListener):
    def enqueue_sentinel(self) -> None:
        # the stdlib's put_nowait raises when the queue is full; a short wait makes room as the writer drains
        with contextlib.suppress(queue.Full):
            self.queue.put(self._sentinel, timeout=SEND_TIMEOUT * 2)  # type: ignore[attr-defined]


def _listening(path: str) -> bool:
    """Whether a syslog daemon (journald's dev-log) listens at `path`: the stdlib handler would accept a path
    nobody listens on and print a traceback for every line."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        probe.connect(path)
    except OSError:
        return False
    finally:
        probe.close()
    return True


class _DroppingQueueHandler(logging.handlers.QueueHandler):
    def __init__(self, q: queue.Queue[logging.LogRecord], on_drop: Callable[[], None] | None) -> None:
        super().__init__(q)
        self.dropped = 0
        self.on_drop = on_drop

    def enqueue(self, record: logging.LogRecord) -> None:
        try:
            self.queue.put_nowait(record)
        except queue.Full:
            self.dropped += 1
            if self.on_drop is not None:
                self.on_drop()

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        return record  # the message is already a finished line


class AccessLog:
    """Where the lines go: the journal (syslog socket, identifier ybgate-access; `journalctl -t ybgate-access`),
    a file rotated by size, stderr, or nowhere."""

    def __init__(
        self,
        to: Sink = "journal",
        *,
        path: Path | None = None,
        max_bytes: int = 50 * 1024 * 1024,
        backups: int = 10,
        syslog_socket: str = "/dev/log",
        on_drop: Callable[[], None] | None = None,
        queue_lines: int = QUEUE_LINES,
    ) -> None:
        self.to = to
        self._handler: _DroppingQueueHandler | None = None
        self._listener: _Listener | None = None
        if to == "off":
            return
        target = self._target(to, path, max_bytes, backups, syslog_socket)
        target.on_fail = on_drop
        q: queue.Queue[logging.LogRecord] = queue.Queue(queue_lines)
        self._handler = _DroppingQueueHandler(q, on_drop)
        self._listener = _Listener(q, target)
        self._listener.start()

    @staticmethod
    def _target(to: Sink, path: Path | None, max_bytes: int, backups: int, syslog_socket: str) -> _Failing:
        handler: _Failing
        if to == "file":
            if path is None:
                raise ValueError("an access log file needs a path")
            handler = _File(path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8")
        elif to == "journal" and _listening(syslog_socket):
            syslog = _Syslog(syslog_socket, facility=logging.handlers.SysLogHandler.LOG_DAEMON)
            syslog.ident = f"{SYSLOG_IDENT}: "
            handler = syslog
        else:
            # stderr, or no journal or syslog daemon here (a container): stderr, which a service manager collects
            handler = _Stderr(sys.stderr)
            handler.setFormatter(logging.Formatter(f"{SYSLOG_IDENT}: %(message)s"))
            return handler
        handler.setFormatter(logging.Formatter("%(message)s"))
        return handler

    @property
    def dropped(self) -> int:
        return 0 if self._handler is None else self._handler.dropped

    def record(self, entry: AccessEntry) -> None:
        if self._handler is not None:
            self._handler.handle(_record(entry.line()))

    def close(self) -> None:
        """Write what is queued, then close the target (a reload that changes the sink closes the old one)."""
        if self._listener is not None:
            self._listener.stop()
            for handler in self._listener.handlers:
                with contextlib.suppress(OSError):
                    handler.close()
            self._listener = None
        self._handler = None
