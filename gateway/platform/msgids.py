"""Message ids for the requests the gateway itself sends (冲正, sign-in, resolution queries, reconciliation).

A msgid is fixmedins_code (12) + yyyyMMddHHmmss (14) + a 4-digit sequence, and the platform refuses one it has
seen before, so a 冲正 sent under a used id fails exactly when it is needed. Every id the gateway mints is
therefore unique for the institution:

- across its senders: one minter per process, shared by all of them (each had its own counter, and two of
  them in the same second made the same id);
- across restarts: the highest second handed out is kept in a small file (fsynced before an id of a new second
  leaves), and a new process starts after it, so a restart within the same second cannot repeat an id;
- across the nodes of a pair: the gateway's sequence range 9000-9999 is divided between the nodes, each minting
  in its own slice.

Within a slice, ids of one second are handed out in turn; when a slice is used up, the minter moves on to the
next second (the id's time may then run a moment ahead of the clock: it is an identifier, not a timestamp).
A HIS may use any sequence, so an id can still equal a HIS's: the outbox refuses a stored clash and the
callers take the next id.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

#: the gateway's part of the 4-digit sequence space
FIRST, SIZE = 9000, 1000


class MsgidMaker:
    def __init__(
        self,
        *,
        high_water: Path | None = None,
        node: int = 0,
        nodes: int = 1,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not 0 <= node < nodes <= SIZE:
            raise ValueError(f"node {node} of {nodes}: needs 0 <= node < nodes <= {SIZE}")
        self._slice = SIZE // nodes
        self._first = FIRST + node * self._slice
        self._clock = clock
        self._path = high_water
        self._lock = threading.Lock()  # reconciliation and the relay mint from the loop; tests from threads
        self._second = 0  # the second of the last id handed out
        self._used = 0  # ids handed out in that second
        self._kept = 0  # the second the file says was reached
        self.unkept = 0  # ids handed out while the mark could not be written
        if high_water is not None:
            self._kept = _read(high_water)
            self._second, self._used = self._kept, self._slice  # the next id starts after the kept second

    def use_slice(self, node: int, nodes: int) -> None:
        """Mint in another slice from now on (a gateway of a pair given another by the database). Ids of the
        current second may have been minted in it by its last holder: the next id is in the next second."""
        if not 0 <= node < nodes <= SIZE:
            raise ValueError(f"node {node} of {nodes}: needs 0 <= node < nodes <= {SIZE}")
        with self._lock:
            self._slice = SIZE // nodes
            self._first = FIRST + node * self._slice
            self._used = self._slice

    def make(self, fixmedins_code: str, now: datetime | None = None) -> str:
        """A new id for this institution. `now` is the message's time (default: the clock); the id takes the
        later of it and the minter's own position."""
        code = f"{fixmedins_code[:12]:<12}".replace(" ", "0")
        wanted = int(now.timestamp()) if now is not None else int(self._clock())
        with self._lock:
            if wanted > self._second:
                self._second, self._used = wanted, 0
            elif self._used >= self._slice:
                self._second, self._used = self._second + 1, 0
            seq = self._first + self._used
            self._used += 1
            if self._path is not None and self._second > self._kept:
                try:
                    _write(self._path, self._second)
                    self._kept = self._second
                except OSError:
                    # A full or read-only state disk must not stop a 冲正: ids stay unique in this process, and
                    # the mark is written with the next id that finds the disk writable again.
                    self.unkept += 1
            second = self._second
        return f"{code}{datetime.fromtimestamp(second):%Y%m%d%H%M%S}{seq:04d}"


def _read(path: Path) -> int:
    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return 0
    except OSError as exc:
        raise ValueError(f"{path}: cannot read the msgid high-water mark ({exc.strerror})") from None
    if not text.isdigit():
        # A damaged mark must not silently restart the sequence: it could repeat ids the platform has seen.
        raise ValueError(
            f"{path}: the msgid high-water mark is damaged ({text[:20]!r}); remove it only after the clock has "
            "passed the last id the gateway sent"
        )
    return int(text)


def _write(path: Path, second: int) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, f"{second}\n".encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dirfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dirfd)
    finally:
        os.close(dirfd)
