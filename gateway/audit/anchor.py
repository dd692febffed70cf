"""Checkpoint hashes published outside the host, and the check of a log against them.

A signed checkpoint proves the chain up to it, but whoever can write the files can cut the tail after any
checkpoint and the log still verifies. Publishing each checkpoint's seq and hash as it is made (a line in an
append-only file that a syslog collector or the platform side keeps) makes such a cut visible: the published
checkpoint is no longer in the log, or is there with another hash.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Anchor:
    seq: int
    hash: str
    ts: float

    def doc(self) -> dict[str, object]:
        return {"kind": "anchor", "seq": self.seq, "hash": self.hash, "ts": self.ts}

    def line(self) -> bytes:
        return json.dumps(self.doc()).encode() + b"\n"


#: where a checkpoint's anchor goes as it is made (a file, MQTT): called on the event loop, must not block long
AnchorSink = Callable[[Anchor], None]


class AnchorFile:
    """Appends one line per checkpoint (O_APPEND: the file only grows; a collector tails it)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def publish(self, anchor: Anchor) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
        try:
            os.write(fd, anchor.line())
        finally:
            os.close(fd)


def read_anchors(path: Path) -> list[tuple[int, Anchor]]:
    """(line number, anchor) of every line of an anchor file; a line that is not an anchor is a ValueError
    naming it."""
    anchors = []
    for number, raw in enumerate(path.read_bytes().splitlines(), 1):
        if not raw.strip():
            continue
        try:
            doc = json.loads(raw)
            anchors.append((number, Anchor(int(doc["seq"]), str(doc["hash"]), float(doc["ts"]))))
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}:{number}: not an anchor line ({exc.__class__.__name__})") from None
    return anchors


def check_anchors(path: Path, hashes: dict[int, str], last_seq: int, where_last: str) -> str | None:
    """The first published checkpoint the log does not hold as published (cut or rewritten), or None."""
    for number, anchor in read_anchors(path):
        if anchor.seq > last_seq:
            return (
                f"{where_last}: the log ends at seq {last_seq} but checkpoint seq {anchor.seq} was published "
                f"({path}:{number}, hash {anchor.hash}): the tail was cut"
            )
        found = hashes.get(anchor.seq)
        if found is not None and found != anchor.hash:
            return (
                f"seq {anchor.seq}: hash {found} differs from the published {anchor.hash} ({path}:{number}): "
                "the chain was rewritten"
            )
    return None
