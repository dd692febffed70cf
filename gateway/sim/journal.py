"""The simulator's journal: every message the platform received, written and fsync'd before it is answered, and
replayed at start, so that a simulator SIGKILLed and started again holds the same ledger (#20).

A real platform does not forget what it booked when its process dies; crash tests that kill the platform compare
what the HIS was told with this ledger, so it must survive the kill. The journal holds the requests, not the
ledger: replaying them through the same platform code, at the platform time each was received, rebuilds every
settlement, refund, visit, fee line, sign-in and id counter exactly (the platform is deterministic given its
input and its clock). A request processed but not yet journaled when the process died was never answered: the
platform's own transaction died with it, as a database rollback would have it.

One JSON line per message, appended with one write and an fsync. A line cut short by the kill (no newline) is a
message that was never answered: it is dropped and the file truncated to the last whole line.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class JournalDamaged(ValueError):
    """A whole line of the journal does not parse: not a torn tail but damage; the ledger cannot be trusted."""


@dataclass(frozen=True)
class Entry:
    """One received message: the ledger's record of it, and the request when the platform processed it."""

    at: float  # the platform time it was processed at (the simulator's clock, offset included)
    message: dict[str, Any]  # the ledger's Message, as its fields
    request: dict[str, Any] | None  # None: recorded but not processed (a fault, unparseable, refused by profile)

    def line(self) -> bytes:
        doc = {"at": self.at, "message": self.message, "request": self.request}
        return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"

    @classmethod
    def parse(cls, raw: bytes) -> Entry:
        doc = json.loads(raw)
        message, request = doc["message"], doc["request"]
        if not isinstance(message, dict) or not isinstance(request, dict | None):
            raise TypeError("message must be an object, request an object or null")
        return cls(float(doc["at"]), message, request)


class Journal:
    """Append-only, fsync'd per entry. Open it, replay `entries()`, then `append` as messages arrive."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        self._whole = self._read()

    def _read(self) -> list[bytes]:
        with open(self.path, "rb") as f:
            data = f.read()
        end = data.rfind(b"\n") + 1
        if end < len(data):  # the kill cut the last write short: that message was never answered
            os.truncate(self.path, end)
            os.fsync(self._fd)
        return data[:end].splitlines()

    def entries(self) -> Iterator[Entry]:
        for number, raw in enumerate(self._whole, 1):
            try:
                yield Entry.parse(raw)
            except (ValueError, KeyError, TypeError) as exc:
                raise JournalDamaged(f"{self.path}: line {number} is not a journal entry ({exc})") from None

    def __len__(self) -> int:
        return len(self._whole)

    def append(self, entry: Entry) -> None:
        """On disk before the caller answers: one write (O_APPEND), then fdatasync."""
        line = memoryview(entry.line())
        while line:
            line = line[os.write(self._fd, line) :]
        os.fdatasync(self._fd)

    def close(self) -> None:
        os.close(self._fd)
