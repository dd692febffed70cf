"""The running gateway's check of its own audit chain (gateway/audit/tailcheck.py): each round verifies what was
appended since the last, follows rotation, and a line altered, removed or cut behind the writer's back turns
ybgate_audit_chain_ok to 0 (the alert YbgateAuditChainBroken fires on it)."""

from __future__ import annotations

from pathlib import Path

from gateway.audit.log import AuditLog, Outcome, audit_files
from gateway.audit.tailcheck import TailCheck
from gateway.crypto import sm3

from conftest import Gateway, fresh


def outcome(i: int) -> Outcome:
    return Outcome(
        f"H44030000001202611250800{i:06d}", "2207", "answered", "infcode 0", "sim", sm3(b"%d" % i), b"a", 1e3 + i
    )


async def written(log: AuditLog, first: int, n: int) -> None:
    log.record(outcome(i) for i in range(first, first + n))
    await log.drain()


async def test_each_round_checks_what_was_appended_and_follows_rotation(tmp_path: Path) -> None:
    log = AuditLog(tmp_path, rotate_bytes=4096)
    log.open()
    check = TailCheck(tmp_path)
    await written(log, 0, 5)
    assert check.run() and check.entries >= 5
    before = check.entries
    for k in range(8):  # batch by batch: the writer rotates between batches, several files
        await written(log, 5 + 5 * k, 5)
    assert len(audit_files(tmp_path)) > 2
    assert check.run() and check.ok
    assert check.entries - before >= 40
    await log.close()


async def test_an_entry_altered_after_it_was_written_breaks_the_check(tmp_path: Path) -> None:
    log = AuditLog(tmp_path)
    log.open()
    check = TailCheck(tmp_path)
    await written(log, 0, 3)
    assert check.run()
    await written(log, 3, 3)
    [path] = audit_files(tmp_path)
    path.write_bytes(path.read_bytes().replace(b'"infcode 0"', b'"infcode 1"'))  # the newest entries changed
    assert not check.run()
    assert check.problem is not None and "altered" in check.problem
    assert not check.run()  # a break is kept
    await log.close()


async def test_a_file_cut_behind_the_writer_breaks_the_check(tmp_path: Path) -> None:
    log = AuditLog(tmp_path)
    log.open()
    check = TailCheck(tmp_path)
    await written(log, 0, 4)
    assert check.run()
    [path] = audit_files(tmp_path)
    path.write_bytes(b"".join(path.read_bytes().splitlines(keepends=True)[:2]))
    assert not check.run() and check.problem is not None and "cut" in check.problem
    await log.close()


async def test_the_gateway_shows_its_chain_in_metrics(gateway: Gateway) -> None:
    sample = gateway.daemon.metrics.registry.get_sample_value
    await gateway.post(fresh("1101_query_request.json"))
    storage = gateway.daemon.storage
    assert storage.audit is not None
    await storage.audit.drain()
    assert await storage.check_audit()
    assert sample("ybgate_audit_chain_ok") == 1
    assert sample("ybgate_audit_chain_checked_timestamp_seconds") is not None
    assert sample("ybgate_audit_write_failures_total") == 0
    await gateway.post(fresh("1101_query_request.json"))
    await storage.audit.drain()
    path = audit_files(gateway.config.audit_dir)[-1]
    lines = path.read_bytes().splitlines(keepends=True)
    assert b'"kind":"outcome"' in lines[-1]
    lines[-1] = lines[-1].replace(b'"answered"', b'"failed"')  # the newest outcome rewritten
    path.write_bytes(b"".join(lines))
    assert not await storage.check_audit()
    assert sample("ybgate_audit_chain_ok") == 0
