"""The audit log on a disk that fills up: no outcome is lost from the chain, the chain has no gap or torn line,
and the writer keeps going once space returns, without a restart. The audit directory is a real tmpfs the test
mounts (root), filled with a real file."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from diskfull import fill, small_tmpfs

from gateway.audit.log import AuditLog, AuditUnavailable, Outcome, audit_files
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


async def test_a_full_disk_at_start_refuses_the_audit_log_with_the_cause(small_disk: Path) -> None:
    # A log that ends with outcomes no checkpoint covers (the last run was killed): opening it signs them with a
    # checkpoint, which a full disk refuses. That used to escape as a bare OSError (ENOSPC, no file name), so
    # the daemon died with a traceback instead of one line saying what to free.
    log = AuditLog(small_disk / "run1", checkpoint_every=500)
    log.open()
    # Outcomes until the file's last page has too little room left for a checkpoint line (tmpfs gives a file its
    # space a page at a time: a line that fits in the page already held would be written on a full disk).
    i = 0
    while i < 5 or -audit_files(small_disk / "run1")[-1].stat().st_size % 4096 > 150:
        log.record([outcome(i)])
        await log.drain()
        i += 1
    killed = small_disk / "killed"
    shutil.copytree(small_disk / "run1", killed)  # as the files stood: no closing checkpoint
    await log.close()
    fill(small_disk)
    reopened = AuditLog(killed, checkpoint_every=500)
    with pytest.raises(AuditUnavailable) as refused:
        reopened.open()
    assert str(killed) in refused.value.message and "no space left" in refused.value.message
    assert verify(audit_files(killed)).ok  # nothing was cut or half-written meanwhile
