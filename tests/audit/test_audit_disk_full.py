"""The audit log on a disk that fills up: no outcome is lost from the chain, the chain has no gap or torn line,
and the writer keeps going once space returns, without a restart. The audit directory is a real tmpfs the test
mounts (root), filled with a real file."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from diskfull import fill, small_tmpfs

from gateway.audit.log import AuditLog, Outcome, audit_files
from gateway.audit.verify import verify
from gateway.crypto import sm3

pytestmark = pytest.mark.root


@pytest.fixture
def small_disk(short_tmp: Path) -> Iterator[Path]:
    with small_tmpfs(short_tmp / "audit", "256k") as where:
        yield where


def outcome(i: int) -> Outcome:
    return Outcome(
        f"H44030000001202611250800{i:06d}", "2207", "answered", "infcode 0", "sim", sm3(b"r%d" % i), b"a", 1e3 + i
    )


async def test_a_full_disk_delays_the_audit_log_and_loses_nothing(small_disk: Path) -> None:
    # The old writer took each batch off its queue before writing it: the ENOSPC ended the flush task (an
    # exception nobody retrieved) and the batch was gone, the chain then continuing after a gap; a write cut
    # short left half a line.
    log = AuditLog(small_disk, checkpoint_every=50)
    log.open()
    log.record(outcome(i) for i in range(10))
    await log.drain()
    filler = fill(small_disk)
    log.record(outcome(i) for i in range(10, 200))
    await asyncio.sleep(0)
    for _ in range(200):  # the writer fails and keeps trying: it is told in write_failures
        if log.write_failures >= 2:
            break
        await asyncio.sleep(0.05)
    assert log.write_failures >= 2
    os.unlink(filler)
    log.record(outcome(i) for i in range(200, 210))
    await asyncio.wait_for(log.drain(), 30)
    await log.close()
    report = verify(audit_files(small_disk))
    assert report.ok, report.problem
    assert report.torn_tail is None
    written = [e for f in audit_files(small_disk) for e in f.read_text().splitlines()]
    msgids = {line.split('"msgid":"')[1].split('"')[0] for line in written if '"kind":"outcome"' in line}
    assert msgids == {outcome(i).msgid for i in range(210)}
