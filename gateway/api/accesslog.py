"""The access log: one line per HIS request, so ops can grep a msgid and see what its HIS was answered.

A line is ten fields separated by single spaces, `-` where a field has no value, in this order:

    time client peer infno msgid status infcode gateway_error upstream ms
    2026-12-05T14:05:44.828+08:00 his-outpatient uid=1500,gid=1500,pid=58 1101 H44030000001202612051405440001 \
        200 0 - province-primary 6.0     (one line; broken here)

time is local with its offset; client is the policy client (`-` without a policy); status is the HTTP status the
HIS got (200 for platform-shaped refusals too); infcode is the platform's (or -1 for a refusal in platform
shape); gateway_error is what ybgate decided (docs/his-integration.md). No field carries patient data: envelope
contents never reach this log.

Entries go to a thread of their own (the stdlib's QueueListener), so a slow journal or disk never stalls the event
loop; when more than `queue_lines` wait there, a line is dropped and counted, never waited for. On the event loop a
request only appends its entry and the time: entries travel in batches (at most FLUSH_AFTER seconds late), and the
writer thread formats the lines, so the loop pays neither a thread wake-up nor a time format per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import logging.handlers
import math
import queue
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

SYSLOG_IDENT = "ybgate-access"
QUEUE_LINES = 10_000
SEND_TIMEOUT = 1.0
#: how long an entry may wait on the event loop for others to travel with it, seconds; and the most in one batch
FLUSH_AFTER, BATCH_LINES = 0.05, 256

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

    def line(self, when: float | None = None) -> str:
        """The line, stamped `when` (seconds since the epoch; now if None)."""
        fields = (
            local_stamp(time.time() if when is None else when),
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


class _Stamps:
    """ISO 8601 local time to the millisecond with the offset, as datetime's isoformat(timespec="milliseconds")
    writes it; the date, time and offset are worked out once a second (one tuple, so a reader in another thread
    never mixes two seconds)."""

    def __init__(self) -> None:
        self.second: tuple[int, str, str] = (-1, "", "")

    def __call__(self, when: float) -> str:
        # as datetime.fromtimestamp: the fraction rounded to the microsecond (half to even), then cut to the milli
        fraction, whole = math.modf(when)
        sec, micro = divmod(int(whole) * 1_000_000 + round(fraction * 1_000_000), 1_000_000)
        cached, prefix, offset = self.second
        if sec != cached:
            local = time.localtime(sec)
            off = local.tm_gmtoff
            offset = f"{'-' if off < 0 else '+'}{abs(off) // 3600:02d}:{abs(off) % 3600 // 60:02d}"
            prefix = time.strftime("%Y-%m-%dT%H:%M:%S", local)
            self.second = (sec, prefix, offset)
        return f"{prefix}.{micro // 1000:03d}{offset}"


local_stamp = _Stamps()


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

    def write_lines(self, lines: list[str]) -> None:
        for line in lines:
            self.handle(_record(line))

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
    def write_lines(self, lines: list[str]) -> None:
        # one write for the batch: a line is complete by itself, so nothing is lost by not formatting each one
        with self.lock:  # type: ignore[union-attr]
            try:
                self.stream.write("".join(f"{SYSLOG_IDENT}: {line}\n" for line in lines))
                self.flush()
            except (OSError, ValueError):
                for _ in lines:
                    if self.on_fail is not None:
                        self.on_fail()


Batch = list[tuple[float, AccessEntry]]


class _Listener(logging.handlers.QueueListener):
    """Takes batches of entries off the queue and writes their lines."""

    def __init__(self, q: queue.Queue[Batch | None], target: _Failing, taken: Callable[[int], None]) -> None:
        super().__init__(q, target)
        self.target, self.taken = target, taken

    def handle(self, record: Batch | None) -> None:  # type: ignore[override]
        if record is None:
            return
        try:
            self.target.write_lines([entry.line(when) for when, entry in record])
        finally:
            self.taken(len(record))


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
        self.on_drop = on_drop
        self.queue_lines = queue_lines
        self.dropped = 0
        self._queue: queue.Queue[Batch | None] | None = None
        self._listener: _Listener | None = None
        self._batch: Batch = []
        self._flush_at: asyncio.TimerHandle | None = None
        #: lines handed to the writer and not written yet; changed by both threads, under the lock
        self._queued = 0
        self._lock = threading.Lock()
        if to == "off":
            return
        target = self._target(to, path, max_bytes, backups, syslog_socket)
        target.on_fail = on_drop
        self._queue = queue.Queue()
        self._listener = _Listener(self._queue, target, self._taken)
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

    def record(self, entry: AccessEntry) -> None:
        if self._queue is None:
            return
        self._batch.append((time.time(), entry))
        if len(self._batch) >= BATCH_LINES:
            self._flush()
        elif self._flush_at is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # outside the event loop (a command, a test): no batching
                self._flush()
                return
            self._flush_at = loop.call_later(FLUSH_AFTER, self._flush)

    def _flush(self) -> None:
        if self._flush_at is not None:
            self._flush_at.cancel()
            self._flush_at = None
        batch, self._batch = self._batch, []
        if not batch or self._queue is None:
            return
        with self._lock:
            room = self.queue_lines - self._queued
            if room < len(batch):
                lost, batch = len(batch) - max(room, 0), batch[: max(room, 0)]
            else:
                lost = 0
            self._queued += len(batch)
        if batch:
            self._queue.put_nowait(batch)
        if lost:
            self.dropped += lost
            if self.on_drop is not None:
                for _ in range(lost):
                    self.on_drop()

    def _taken(self, lines: int) -> None:
        with self._lock:
            self._queued -= lines

    def close(self) -> None:
        """Write what is queued, then close the target (a reload that changes the sink closes the old one)."""
        self._flush()
        if self._listener is not None:
            self._listener.stop()
            for handler in self._listener.handlers:
                with contextlib.suppress(OSError):
                    handler.close()
            self._listener = None
        self._queue = None
