"""When the audit log fsyncs: before a checkpoint's anchor is published (a published anchor must never name a
checkpoint a power loss could take back, or `audit verify --anchor` would call an honest log cut), at least once
a second under load instead of once per batch (an fsync costs the disk's whole flush; an outcome the disk has
not got yet is still in the outbox, and catch-up audits it again), and when the writer catches up; writes at
most every WRITE_EVERY while outcomes keep coming (each is a round trip to the writer thread).

Real files and real fsyncs: os.fsync and os.write are wrapped to note the log file's size at each call, and
then do what they always do."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.audit import log as audit_log
from gateway.audit.anchor import Anchor
from gateway.audit.batches import SYNC_EVERY, WRITE_EVERY
from gateway.audit.log import AuditLog, Outcome, audit_files
from gateway.crypto import sm3


def outcome(i: int) -> Outcome:
    return Outcome(f"H44030000001202611250800{i:06d}", "2207", "answered", "infcode 0", "sim", sm3(b"%d" % i), b"r", i)


class DiskCalls:
    """The log file's size at each fsync, and the number of writes to it."""

    def __init__(self) -> None:
        self.fd: int | None = None
        self.synced: list[int] = []
        self.writes = 0


@pytest.fixture
def disk(monkeypatch: pytest.MonkeyPatch) -> Iterator[DiskCalls]:
    calls = DiskCalls()
    real_fsync: Callable[[int], None] = os.fsync
    real_write: Callable[[int, Any], int] = os.write

    def fsync(fd: int) -> None:
        real_fsync(fd)
        if fd == calls.fd:
            calls.synced.append(os.fstat(fd).st_size)

    def write(fd: int, data: Any) -> int:
        if fd == calls.fd:
            calls.writes += 1
        return real_write(fd, data)

    monkeypatch.setattr(audit_log.os, "fsync", fsync)
    monkeypatch.setattr(audit_log.os, "write", write)
    yield calls


def opened(directory: Path, disk: DiskCalls, **kw: Any) -> AuditLog:
    log = AuditLog(directory, **kw)
    log.open()
    assert log._file is not None
    disk.fd = log._file.fileno()
    return log


async def test_an_anchor_is_published_only_when_its_checkpoint_is_on_disk(tmp_path: Path, disk: DiskCalls) -> None:
    seen: list[tuple[Anchor, bool, bool]] = []

    def publish(anchor: Anchor) -> None:
        [path] = audit_files(tmp_path)
        data = path.read_bytes()
        lines = [json.loads(raw) for raw in data.splitlines()]
        written = any(e["seq"] == anchor.seq and e["hash"] == anchor.hash for e in lines)
        # the checkpoint's line ends the file or comes before its end: synced means an fsync covered that length
        end = next((i for i, e in enumerate(lines) if e["seq"] == anchor.seq), len(lines))
        needed = len(b"".join(data.splitlines(keepends=True)[: end + 1]))
        seen.append((anchor, written, bool(disk.synced) and disk.synced[-1] >= needed))

    log = opened(tmp_path, disk, checkpoint_every=10, anchors=[publish])
    for i in range(35):
        log.record([outcome(i)])
        if i % 4 == 0:
            await asyncio.sleep(0)
    await log.close()
    assert [a.seq for a, _, _ in seen] == [11, 22, 33, 39]  # every 10 outcomes, and the close
    assert all(written and synced for _, written, synced in seen), seen


async def test_under_a_stream_of_outcomes_the_log_writes_in_batches_and_fsyncs_about_once_a_second(
    tmp_path: Path, disk: DiskCalls
) -> None:
    log = opened(tmp_path, disk, checkpoint_every=100_000, checkpoint_interval=3600)
    loop = asyncio.get_running_loop()
    started = loop.time()
    i = 0
    while loop.time() - started < 2.5 * SYNC_EVERY:
        log.record([outcome(i)])
        i += 1
        await asyncio.sleep(0.0005)  # ~1,000 outcomes a second, each batch a few
    elapsed = loop.time() - started
    await log.drain()
    size = audit_files(tmp_path)[0].stat().st_size
    print(f"{i} outcomes in {elapsed:.1f} s, {disk.writes} writes, {len(disk.synced)} fsyncs")
    # on the old code, a write and an fsync for every few outcomes: hundreds of each
    assert 20 < disk.writes <= elapsed / WRITE_EVERY + 3 and len(disk.synced) <= 5
    assert disk.synced[-1] == size  # caught up: all of it on disk
    await log.close()
