"""The SM3-chained audit log on real files: every kind of tampering is named, a torn tail is cut and told
apart from tampering, rotation keeps the chain, checkpoints are signed, and a running gateway writes one
entry per finished request and none for a refused one."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from gateway.audit.chain import GENESIS, canonical
from gateway.audit.log import AuditLog, Outcome, audit_files
from gateway.audit.verify import verify
from gateway.crypto import SM2PrivateKey, sm3

from conftest import Gateway, example, fresh, until, ybgate_output


def outcome(i: int, state: str = "answered") -> Outcome:
    return Outcome(
        f"H44030000001202611250800{i:06d}", "2207", state, "infcode 0", "sim", sm3(b"req%d" % i), b"resp", 1000.0 + i
    )


async def write_log(directory: Path, n: int, **kw: object) -> AuditLog:
    log = AuditLog(directory, **kw)  # type: ignore[arg-type]
    log.open()
    log.record(outcome(i) for i in range(n))
    await log.close()
    return log


def lines(directory: Path) -> list[bytes]:
    return [ln for f in audit_files(directory) for ln in f.read_bytes().splitlines(keepends=True)]


def rewrite(directory: Path, new: list[bytes]) -> None:
    [path] = audit_files(directory)
    path.write_bytes(b"".join(new))


async def test_a_clean_chain_verifies(tmp_path: Path) -> None:
    await write_log(tmp_path, 10)
    report = verify(audit_files(tmp_path))
    assert report.ok and report.entries == 10 and report.torn_tail is None


@pytest.mark.parametrize("kind", ["byte", "delete", "swap", "insert"])
async def test_tampering_is_named(tmp_path: Path, kind: str) -> None:
    await write_log(tmp_path, 10)
    ls = lines(tmp_path)
    if kind == "byte":
        ls[4] = ls[4].replace(b'"answered"', b'"answereD"')
        expected = "seq 5 msgid H44030000001202611250800000004: content does not match its hash (altered)"
    elif kind == "delete":
        del ls[4]
        expected = "seq 6 msgid H44030000001202611250800000005: expected seq 5"
    elif kind == "swap":
        ls[4], ls[5] = ls[5], ls[4]
        expected = "seq 6 msgid H44030000001202611250800000005: expected seq 5"
    else:
        ls.insert(4, ls[2])
        expected = "seq 3 msgid H44030000001202611250800000002: expected seq 5"
    rewrite(tmp_path, ls)
    report = verify(audit_files(tmp_path))
    assert not report.ok and expected in (report.problem or ""), report.problem
    assert "audit-000001.jsonl:5 seq" in (report.problem or "")  # the file and line


async def test_a_recomputed_hash_still_breaks_the_next_link(tmp_path: Path) -> None:
    """Someone who edits an entry and recomputes its own hash is caught by the entry after it."""
    from gateway.audit.chain import link

    await write_log(tmp_path, 5)
    ls = lines(tmp_path)
    entry = json.loads(ls[2])
    entry["state"] = "failed"
    entry["hash"] = link(entry["prev"], entry)
    ls[2] = json.dumps(entry, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode() + b"\n"
    rewrite(tmp_path, ls)
    report = verify(audit_files(tmp_path))
    assert "seq 4" in (report.problem or "") and "does not link to the entry before it" in (report.problem or "")


async def test_a_torn_tail_is_cut_on_open_and_reported_as_such(tmp_path: Path) -> None:
    await write_log(tmp_path, 6)
    [path] = audit_files(tmp_path)
    path.write_bytes(path.read_bytes() + b'{"kind":"outcome","seq":7,"msgid":"H4403')  # a write cut by kill -9
    report = verify(audit_files(tmp_path))
    assert report.ok and report.entries == 6 and "incomplete last line" in (report.torn_tail or "")
    log = AuditLog(tmp_path)
    log.open()  # the daemon's start: cut back to the last complete entry, continue the chain
    log.record([outcome(99)])
    await log.close()
    report = verify(audit_files(tmp_path))
    assert report.ok and report.entries == 7 and report.torn_tail is None


async def test_rotation_keeps_one_chain_and_checkpoints_are_signed(tmp_path: Path) -> None:
    key = SM2PrivateKey.generate()
    log = AuditLog(tmp_path, rotate_bytes=4096, checkpoint_every=5, signer=key, signer_subject="CN=gw")
    log.open()
    for i in range(40):
        log.record([outcome(i)])
        await log.drain()  # one write per entry: rotation falls between entries however slow the disk is
    await log.close()
    files = audit_files(tmp_path)
    assert len(files) > 2
    report = verify(files, key.public_key())
    assert report.ok and report.entries == 40 and report.checkpoints == 8 and report.signed_checkpoints == 8
    other = SM2PrivateKey.generate().public_key()
    assert "checkpoint signature does not verify" in (verify(files, other).problem or "")
    # A later file alone verifies from its first link; a missing middle file is a break.
    assert verify(files[-1:], key.public_key()).ok
    assert not verify([files[0], files[2]], key.public_key()).ok


def test_chain_hash_is_sm3_as_openssl_computes_it(tmp_path: Path) -> None:
    entry = {"kind": "outcome", "seq": 1, "msgid": "M", "prev": GENESIS}
    data = bytes.fromhex(GENESIS) + canonical(entry)
    (tmp_path / "d").write_bytes(data)
    out = subprocess.run(["openssl", "dgst", "-sm3", str(tmp_path / "d")], capture_output=True, text=True, check=True)
    from gateway.audit.chain import link

    assert out.stdout.strip().endswith(link(GENESIS, entry))


async def test_the_gateway_audits_each_finished_request_once_and_no_refused_one(gateway: Gateway) -> None:
    sign_no = await gateway.sign_in()
    query = fresh("1101_query_request.json", sign_no=sign_no)
    await gateway.post(query)
    await gateway.post(query)  # the same msgid again: answered from the outbox, not a second outcome
    await gateway.post(example("9001_signin_request.json") | {"msgid": "bad"})  # refused before the outbox
    gateway.sim.faults.set("2207", {"kind": "drop_after", "times": 1})
    settle = fresh("2207_settle_request.json", sign_no=sign_no)
    await gateway.post(settle)  # in doubt, then reversed: one entry for the settlement, one for the 2601
    assert gateway.daemon.audit is not None
    directory = gateway.config.audit_dir

    def outcome_infnos() -> list[str]:
        return [e["infno"] for e in map(json.loads, lines(directory)) if e["kind"] == "outcome"]

    await until(lambda: "2601" in outcome_infnos())  # the 冲正's outcome is written after the HIS's answer
    entries = [json.loads(ln) for ln in lines(directory)]
    outcomes = [(e["msgid"], e["infno"], e["state"]) for e in entries if e["kind"] == "outcome"]
    assert (query["msgid"], "1101", "answered") in outcomes
    assert (settle["msgid"], "2207", "reversed") in outcomes
    assert sum(1 for o in outcomes if o[1] == "2601") == 1
    assert len(outcomes) == len(set(outcomes)) == 4  # sign-in, query, settlement, reversal
    clients = {e["infno"]: e["client"] for e in entries if e["kind"] == "outcome"}
    assert clients["1101"] == clients["2207"] == "demo-user"  # the policy's name for the caller
    assert clients["2601"] == f"ybgate:reversal of {settle['msgid']}"
    assert all("bad" not in e.get("msgid", "") for e in entries)
    assert not any("李四" in ln.decode() for ln in lines(directory))  # digests only, no patient data
    code, out, err = await ybgate_output("audit", "verify", *map(str, audit_files(directory)))
    assert code == 0 and "ok: 4 entries" in out, err
