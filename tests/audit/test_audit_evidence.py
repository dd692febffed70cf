"""The audit log against an insider who can write its files and knows the (public) SM3 chain formula, but has
not the sign key: every tampered copy fails `ybgate audit verify --cert` (the real CLI, in its own process) with
the line named, while an untouched log, and a log written by the previous release, still verify."""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from gateway.audit.anchor import AnchorFile
from gateway.audit.chain import GENESIS, link
from gateway.audit.log import AuditLog, Outcome, audit_files
from gateway.crypto import SM2PrivateKey, sm3

from conftest import DATA, ybgate_output

PKI = DATA / "crypto" / "pki"
CERT = PKI / "client_sign.crt.pem"
#: written by the previous release (before checkpoints declared their cadence): 45 entries, rotation into two
#: files, a signed checkpoint every 10 entries, 5 entries after the last one
RELEASE_1 = DATA / "audit" / "release-1"


def sign_key() -> SM2PrivateKey:
    return SM2PrivateKey.from_pem((PKI / "client_sign.key.plain.pem").read_bytes())


class Clock:
    def __init__(self, now: float = 1_764_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def outcome(i: int) -> Outcome:
    return Outcome(f"H44030000001202611250800{i:06d}", "2207", "answered", "infcode 0", "sim", sm3(b"%d" % i), b"r", i)


async def write_log(directory: Path, n: int, *, signed: bool = True, step: float = 1.0, **kw: Any) -> Clock:
    clock = Clock()
    log = AuditLog(directory, checkpoint_every=10, signer=sign_key() if signed else None, clock=clock, **kw)
    log.open()
    for i in range(n):
        log.record([outcome(i)])
        clock.now += step
    await log.close()
    return clock


def entries(directory: Path) -> list[dict[str, Any]]:
    return [json.loads(raw) for raw in audit_files(directory)[0].read_bytes().splitlines()]


def rechain(items: list[dict[str, Any]], *, strip_sig: bool) -> list[dict[str, Any]]:
    """What an insider can do without the key: renumber and recompute every link (signatures kept or stripped)."""
    prev, out = GENESIS, []
    for seq, original in enumerate(items, 1):
        item = {k: v for k, v in original.items() if not (strip_sig and k == "sig")} | {"seq": seq, "prev": prev}
        item["hash"] = prev = link(prev, item)
        out.append(item)
    return out


def save(directory: Path, items: list[dict[str, Any]]) -> None:
    text = "".join(json.dumps(i, ensure_ascii=False, separators=(",", ":")) + "\n" for i in items)
    audit_files(directory)[0].write_text(text, encoding="utf-8")


def altered(directory: Path, index: int = 12) -> list[dict[str, Any]]:
    items = entries(directory)
    assert items[index]["kind"] == "outcome"
    items[index]["state"] = "failed"  # the edit the insider wants to hide
    return items


async def verify_cli(*args: str | Path) -> tuple[int, str, str]:
    return await ybgate_output("audit", "verify", *(str(a) for a in args))


async def broken(directory: Path, *extra: str | Path) -> str:
    code, out, err = await verify_cli(*audit_files(directory), "--cert", CERT, *extra)
    assert code == 1 and "BROKEN" in err, (code, out, err)
    return err


async def test_an_untouched_signed_log_verifies(tmp_path: Path) -> None:
    await write_log(tmp_path, 45)
    code, out, err = await verify_cli(*audit_files(tmp_path), "--cert", CERT)
    assert code == 0, err
    # 4 checkpoints at the cadence and the one a clean stop writes: no unsigned span is left
    assert "45 entries, 5 checkpoints (5 signature(s) checked)" in out and "not yet signed" not in out


async def test_the_previous_release_log_verifies() -> None:
    files = audit_files(RELEASE_1)
    code, out, err = await verify_cli(*files, "--cert", CERT, "--checkpoint-every", "10")
    assert code == 0, err
    assert "45 entries, 4 checkpoints (4 signature(s) checked) in 2 file(s)" in out
    assert "5 entries after the last checkpoint are not yet signed (" in out and "audit-000002.jsonl:44" in out


async def test_the_previous_release_log_is_continued_and_still_verifies(tmp_path: Path) -> None:
    for f in audit_files(RELEASE_1):
        shutil.copy(f, tmp_path / f.name)
    log = AuditLog(tmp_path, checkpoint_every=10, signer=sign_key())
    log.open()  # signs the 5 entries the previous release left unsigned
    log.record([outcome(100)])
    await log.close()
    code, out, err = await verify_cli(*audit_files(tmp_path), "--cert", CERT)
    assert code == 0, err
    assert "46 entries, 6 checkpoints (6 signature(s) checked)" in out


async def test_signatures_stripped_after_an_edit(tmp_path: Path) -> None:
    await write_log(tmp_path, 45)
    original = altered(tmp_path)
    save(tmp_path, rechain(original, strip_sig=True))
    err = await broken(tmp_path)
    # line 11 is the checkpoint after entry 10; the edit is on line 13; line 22 the next checkpoint
    assert "audit-000001.jsonl:11 seq 11" in err and "checkpoint is not signed, nor is any before it" in err, err
    items = rechain(original, strip_sig=False)
    for item in items[13:]:
        item.pop("sig", None)  # only the signatures the edit invalidated
    save(tmp_path, items)
    err = await broken(tmp_path)
    assert "audit-000001.jsonl:22 seq 22" in err and "checkpoint has no signature (stripped)" in err, err


async def test_checkpoints_dropped_after_an_edit(tmp_path: Path) -> None:
    await write_log(tmp_path, 45)
    items = altered(tmp_path)
    kept = items[:12] + [i for i in items[12:] if i["kind"] != "checkpoint"]
    save(tmp_path, rechain(kept, strip_sig=False))
    err = await broken(tmp_path)
    # 34 entries after the checkpoint on line 11: the 11th of them (line 22) is one more than the cadence allows
    assert "audit-000001.jsonl:22 seq 22" in err, err
    assert "11 entries without a checkpoint, more than the cadence of 10" in err
    assert "unsigned span from " in err and "audit-000001.jsonl:12, after " in err and "jsonl:11" in err, err


async def test_checkpoints_dropped_after_an_edit_in_a_quiet_period(tmp_path: Path) -> None:
    """Fewer entries than the cadence after the edit, but spread over more than the interval: the time rule."""
    await write_log(tmp_path, 19, step=40.0, checkpoint_interval=300.0)
    items = entries(tmp_path)
    # entries 40 s apart: a checkpoint after the first entry 300 s after the last one, then the clean stop's
    assert [i["seq"] for i in items if i["kind"] == "checkpoint"] == [10, 19, 22]
    code, _, err = await verify_cli(*audit_files(tmp_path), "--cert", CERT)
    assert code == 0, err
    items[10]["state"] = "failed"
    kept = [i for i in items if not (i["kind"] == "checkpoint" and i["seq"] > 10)]
    save(tmp_path, rechain(kept, strip_sig=False))  # 10 entries after line 10: within the count
    err = await broken(tmp_path)
    assert "audit-000001.jsonl:19 seq 19" in err and "a checkpoint was due after " in err, err
    assert "jsonl:18 (300 s after the last one)" in err and "jsonl:11, after " in err and "jsonl:10)" in err, err


async def test_stale_signatures_after_an_edit(tmp_path: Path) -> None:
    await write_log(tmp_path, 45)
    save(tmp_path, rechain(altered(tmp_path), strip_sig=False))
    err = await broken(tmp_path)
    assert "audit-000001.jsonl:22 seq 22" in err and "checkpoint signature does not verify" in err, err


async def test_a_signature_moved_from_another_checkpoint(tmp_path: Path) -> None:
    await write_log(tmp_path, 45)
    items = altered(tmp_path)
    items = rechain(items, strip_sig=False)
    items[21]["sig"] = items[10]["sig"]  # a genuine signature, of another hash
    save(tmp_path, items)
    err = await broken(tmp_path)
    assert "audit-000001.jsonl:22 seq 22" in err and "does not verify" in err, err


async def test_every_signature_removed(tmp_path: Path) -> None:
    await write_log(tmp_path, 45)
    items = entries(tmp_path)
    for item in items:
        item.pop("sig", None)
    save(tmp_path, items)  # no link changes: the signature is outside the hash
    err = await broken(tmp_path)
    assert "audit-000001.jsonl:11 seq 11" in err and "nor is any before it" in err, err


async def test_an_unsigned_log_presented_as_signed(tmp_path: Path) -> None:
    await write_log(tmp_path, 45, signed=False)
    err = await broken(tmp_path)
    assert "audit-000001.jsonl:11 seq 11" in err and "written without a signer" in err, err
    shutil.rmtree(tmp_path)
    await write_log(tmp_path, 5, signed=False)
    items = [i for i in entries(tmp_path) if i["kind"] != "checkpoint"]
    save(tmp_path, items)  # a young log with no checkpoint at all
    err = await broken(tmp_path)
    assert "audit-000001.jsonl:1: no signed checkpoint in 5 entries" in err, err
    code, _, _ = await verify_cli(*audit_files(tmp_path))
    assert code == 0  # without a certificate nothing is claimed about signatures


async def test_a_missing_newline_cannot_hide_a_later_file(tmp_path: Path) -> None:
    clock = Clock()
    log = AuditLog(tmp_path, rotate_bytes=4096, checkpoint_every=10, signer=sign_key(), clock=clock)
    log.open()
    for i in range(30):
        log.record([outcome(i)])
        await log.close()  # one write per entry, so rotation falls between entries
        log = AuditLog(tmp_path, rotate_bytes=4096, checkpoint_every=10, signer=sign_key(), clock=clock)
        log.open()
    await log.close()
    first, second, *_ = audit_files(tmp_path)
    first.write_bytes(first.read_bytes()[:-1])
    data = second.read_bytes().splitlines(keepends=True)
    data[0] = data[0].replace(b'"answered"', b'"failed"')
    second.write_bytes(b"".join(data))
    code, out, err = await verify_cli(*audit_files(tmp_path), "--cert", CERT)
    lines = len(first.read_bytes().split(b"\n"))
    assert code == 1 and f"{first}:{lines}: a line without its newline before later files" in err, (out, err)


async def test_a_line_that_is_no_chain_entry_is_named(tmp_path: Path) -> None:
    await write_log(tmp_path, 5)
    [path] = audit_files(tmp_path)
    proof = {"kind": "export", "from": "2026-11-25", "to": "2026-11-25", "entries": 5, "hash_before": None}
    path.write_bytes(path.read_bytes() + json.dumps(proof).encode() + b"\n")
    code, _, err = await verify_cli(path)
    assert code == 1 and f"{path}:7 seq None msgid -: not a chain entry: `prev` is missing" in err, err


async def test_without_a_certificate_the_note_is_said_once(tmp_path: Path) -> None:
    await write_log(tmp_path, 45)
    code, out, _ = await verify_cli(*audit_files(tmp_path))
    assert code == 0
    assert out.count("note: checkpoint signatures not checked (no certificate given)") == 1, out


@pytest.mark.parametrize("cut", ["after_checkpoint", "rewritten"])
async def test_a_tail_cut_is_visible_against_the_published_anchors(tmp_path: Path, cut: str) -> None:
    logdir, anchors = tmp_path / "audit", tmp_path / "anchors.jsonl"
    await write_log(logdir, 45, anchors=[AnchorFile(anchors).publish])
    published = [json.loads(raw) for raw in anchors.read_bytes().splitlines()]
    items = entries(logdir)
    assert [(a["seq"], a["hash"]) for a in published] == [
        (i["seq"], i["hash"]) for i in items if i["kind"] == "checkpoint"
    ]
    code, out, err = await verify_cli(*audit_files(logdir), "--cert", CERT, "--anchor", anchors)
    assert code == 0 and "published checkpoints match" in out, err
    if cut == "after_checkpoint":
        save(logdir, items[:33])  # up to the third checkpoint: the chain and its signatures are intact
        code, _, err = await verify_cli(*audit_files(logdir), "--cert", CERT)
        assert code == 0, err  # which is why the hashes are published
        err = await broken(logdir, "--anchor", anchors)
        assert "audit-000001.jsonl:33: the log ends at seq 33 but checkpoint seq 44 was published" in err, err
        assert f"{anchors}:4" in err and "the tail was cut" in err
    else:
        wrong = dict(published[1], hash=sm3(b"x").hex())
        anchors.write_text(json.dumps(published[0]) + "\n" + json.dumps(wrong) + "\n")
        err = await broken(logdir, "--anchor", anchors)
        assert f"seq 22: hash {published[1]['hash']} differs from the published" in err and "rewritten" in err, err


def test_signatures_are_the_gateway_key_s(tmp_path: Path) -> None:
    """The fixture's checkpoints are signed by the key whose certificate the tests verify with."""
    from gateway.audit.chain import signature_ok
    from gateway.crypto import Certificate

    key = Certificate.load_pem_chain(CERT.read_bytes())[0].public_key
    cps = [json.loads(r) for f in audit_files(RELEASE_1) for r in f.read_bytes().splitlines()]
    cps = [c for c in cps if c["kind"] == "checkpoint"]
    assert len(cps) == 4 and all(signature_ok(c, key) for c in cps)
    assert all(len(base64.b64decode(c["sig"])) > 0 for c in cps)
