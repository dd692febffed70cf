"""The simulator's journal (#20): a `ybgate sim --journal` process SIGKILLed and started again holds the same
ledger — settlements, refunds, reversals, visits, fee lines, sign-ins, every message — and goes on numbering
where it stopped, so crash tests that kill the platform still have their ground truth. Real processes, real
SIGKILL, plain HTTP on loopback."""

from __future__ import annotations

import asyncio
import json
import signal
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest_asyncio
from daemonproc import free_port

from conftest import PLATFORM_PATH, fresh, ybgate_output, ybgate_process


class SimProcess:
    def __init__(self, journal: Path) -> None:
        self.journal = journal
        self.port, self.admin_port = free_port(), free_port()
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.proc = await ybgate_process(
            "sim", "--port", str(self.port), "--admin-port", str(self.admin_port), "--journal", str(self.journal)
        )
        for _ in range(400):
            try:
                await self.admin("GET", "/_sim")
                return
            except OSError:
                assert self.proc.returncode is None, "the simulator exited"
                await asyncio.sleep(0.05)
        raise AssertionError("the simulator did not start")

    async def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()

    def _call(self, port: int, method: str, path: str, doc: Any = None) -> Any:
        data = None if doc is None else json.dumps(doc, ensure_ascii=False).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method)
        with urllib.request.urlopen(req, timeout=10) as reply:
            return json.loads(reply.read())

    async def admin(self, method: str, path: str, doc: Any = None) -> Any:
        return await asyncio.to_thread(self._call, self.admin_port, method, path, doc)

    async def send(self, doc: dict[str, Any]) -> dict[str, Any]:
        answer: dict[str, Any] = await asyncio.to_thread(self._call, self.port, "POST", PLATFORM_PATH, doc)
        return answer


@pytest_asyncio.fixture
async def sim(short_tmp: Path) -> AsyncIterator[SimProcess]:
    one = SimProcess(short_tmp / "ledger.journal")
    await one.start()
    yield one
    if one.proc is not None and one.proc.returncode is None:
        await one.kill()


def settle(sign_no: str, psn_no: str, n: int) -> dict[str, Any]:
    doc = fresh("2207_settle_request.json", sign_no=sign_no)
    doc["input"]["data"] |= {"psn_no": psn_no, "chrg_bchno": f"CB{n:014d}", "medfee_sumamt": f"{100 + n}.00"}
    return doc


def cancel(sign_no: str, psn_no: str, setl_id: str) -> dict[str, Any]:
    doc = fresh("2207_settle_request.json", infno="2208", sign_no=sign_no)
    doc["input"]["data"] |= {"psn_no": psn_no, "setl_id": setl_id}
    return doc


def reverse(sign_no: str, psn_no: str, omsgid: str, oinfno: str) -> dict[str, Any]:
    return fresh(
        "2601_reversal_request.json",
        sign_no=sign_no,
        input={"data": {"psn_no": psn_no, "omsgid": omsgid, "oinfno": oinfno}},
    )


async def business(sim: SimProcess, psn_no: str) -> tuple[str, list[str]]:
    """Book what a day brings: a visit, fee lines, settlements, one cancelled, one reversed, a cancellation
    reversed, a refused message. The sign_no and the setl_ids."""
    sign_no = str((await sim.send(fresh("9001_signin_request.json")))["output"]["signinoutb"]["sign_no"])
    visit = fresh("2207_settle_request.json", infno="2201", sign_no=sign_no)
    visit["input"] = {"data": {"psn_no": psn_no, "insutype": "310", "ipt_otp_no": "MZ00000001"}}
    fees = fresh("2207_settle_request.json", infno="2204", sign_no=sign_no)
    fees["input"] = {"feedetail": [{"feedetl_sn": "0000000001", "mdtrt_id": "M1", "psn_no": psn_no}]}
    for doc in (visit, fees):
        assert str((await sim.send(doc))["infcode"]) == "0"
    booked = [settle(sign_no, psn_no, n) for n in range(4)]
    setl_ids = [str((await sim.send(doc))["output"]["setlinfo"]["setl_id"]) for doc in booked]
    refund = cancel(sign_no, psn_no, setl_ids[0])
    assert str((await sim.send(refund))["infcode"]) == "0"
    for omsgid, oinfno in ((booked[1]["msgid"], "2207"), (refund["msgid"], "2208")):
        assert str((await sim.send(reverse(sign_no, psn_no, omsgid, oinfno)))["infcode"]) == "0"
    await sim.admin("POST", "/_sim/faults", {"2207": {"kind": "refuse", "times": 1}})
    assert str((await sim.send(settle(sign_no, psn_no, 9)))["infcode"]) == "-1"  # recorded, not processed
    return sign_no, setl_ids


async def test_a_killed_simulator_comes_back_with_the_same_ledger(sim: SimProcess) -> None:
    psn_no = "44000000000000000077"
    sign_no, setl_ids = await business(sim, psn_no)
    before = await sim.admin("GET", "/_sim/ledger")
    states = {s["setl_id"]: s["state"] for s in before["settlements"]}
    assert [states[i] for i in setl_ids] == ["booked", "reversed", "booked", "booked"]  # the 2208 was reversed
    assert len(before["messages"]) == 11 and before["messages"][-1]["fault"] == "refuse"

    await sim.kill()
    await sim.start()
    assert await sim.admin("GET", "/_sim/ledger") == before

    # It goes on from there: the sign-in still holds, a new settlement gets a new setl_id, what was cancelled
    # and reversed back is in force again and can be cancelled, what was reversed cannot.
    again = await sim.send(settle(sign_no, psn_no, 5))
    assert str(again["infcode"]) == "0" and again["output"]["setlinfo"]["setl_id"] not in setl_ids
    assert str((await sim.send(cancel(sign_no, psn_no, setl_ids[0])))["infcode"]) == "0"
    refused = await sim.send(cancel(sign_no, psn_no, setl_ids[1]))
    assert str(refused["infcode"]) == "-1" and "已撤销" in refused["err_msg"]
    after = await sim.admin("GET", "/_sim/ledger")
    assert after["messages"][: len(before["messages"])] == before["messages"]
    assert len(after["messages"]) == len(before["messages"]) + 3


async def test_a_line_cut_short_by_the_kill_is_a_message_never_answered(sim: SimProcess) -> None:
    await business(sim, "44000000000000000078")
    before = await sim.admin("GET", "/_sim/ledger")
    await sim.kill()
    whole = sim.journal.read_bytes()
    with sim.journal.open("ab") as f:
        f.write(b'{"at":1764800000.5,"message":{"seq":12,"infno":"2207"')  # the write the kill cut
    await sim.start()
    assert await sim.admin("GET", "/_sim/ledger") == before
    assert sim.journal.read_bytes() == whole  # truncated to the last whole line, so appends start clean


async def test_a_damaged_journal_is_refused_by_name(short_tmp: Path) -> None:
    journal = short_tmp / "ledger.journal"
    journal.write_bytes(b'{"at":1,"message":{}}\n')
    port, admin_port = str(free_port()), str(free_port())
    code, _, err = await ybgate_output("sim", "--port", port, "--admin-port", admin_port, "--journal", str(journal))
    assert code == 1
    assert f"--journal {journal}" in err and "line 1 is not a journal entry" in err


async def test_a_refusal_of_the_platform_is_journaled_too(sim: SimProcess) -> None:
    """A message the platform refuses is part of the ledger (msgid reuse is counted from it)."""
    bad = fresh("2207_settle_request.json", sign_no="440000G9999999999999")
    with_err: dict[str, Any] = await sim.send(bad)
    assert str(with_err["infcode"]) == "-1"
    await sim.kill()
    await sim.start()
    messages = (await sim.admin("GET", "/_sim/ledger"))["messages"]
    assert [(m["msgid"], m["infcode"]) for m in messages] == [(bad["msgid"], -1)]


async def test_an_unreadable_journal_path_is_refused(short_tmp: Path) -> None:
    where = short_tmp / "no-such-dir" / "ledger.journal"
    port, admin_port = str(free_port()), str(free_port())
    code, _, err = await ybgate_output("sim", "--port", port, "--admin-port", admin_port, "--journal", str(where))
    assert code == 1 and f"--journal {where}" in err, err
