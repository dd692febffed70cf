"""`ybgate demo --once` end to end over the real socket, and its ledger check failing when it should."""

from __future__ import annotations

import asyncio
import io
import json
import re
import signal
import subprocess
import sys

from gateway.app.demo import DemoRun
from gateway.http1.unix_client import request

from conftest import Gateway, example, fresh


def test_demo_once_as_a_process() -> None:
    # --tcp with port 0: the default 127.0.0.1:8097 may be taken on a shared host
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "demo", "--once", "--tcp", "127.0.0.1:0"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for step in ("sign-in", "person query", "pre-settlement", "settlement", "reversal"):
        assert f"ok  {step}" in result.stdout
    assert result.stdout.count("booked 1 time(s), state ['reversed']") == 2
    assert "ok  settlement, answer lost" in result.stdout and "ok  HIS retries same msgid" in result.stdout
    assert "ok  sign-in over TCP (LAN HIS) http://127.0.0.1:" in result.stdout
    assert result.stdout.rstrip().endswith("demo: PASS")


async def test_ledger_check_fails_on_double_or_missing_booking(gateway: Gateway) -> None:
    assert gateway.sim.addresses is not None
    sign_no = await gateway.sign_in()
    settle = example("2207_settle_request.json") | {"sign_no": sign_no}
    # A HIS calling the platform directly and resending: the platform books twice; the check must catch it.
    gateway.sim.platform.process(settle)
    gateway.sim.platform.process(settle)
    run = DemoRun(gateway.config.api_socket, gateway.sim.addresses.admin, io.StringIO())
    assert not await run.check_ledger(settle["msgid"])
    assert "booked 2 time(s)" in run.out.getvalue()
    assert not await run.check_ledger("H44030000001202611240000009999")
    reversed_once = example("2207_settle_request.json") | {
        "sign_no": sign_no,
        "msgid": "H44030000001202611240820039999",
    }
    await gateway.post(reversed_once)
    rev = example("2601_reversal_request.json") | {"sign_no": sign_no}
    rev["input"]["data"]["omsgid"] = reversed_once["msgid"]
    assert json.loads((await gateway.post(rev)).body)["infcode"] in (0, "0")
    assert await run.check_ledger(reversed_once["msgid"])


async def test_a_retry_with_the_same_msgid_resends_the_same_bytes(gateway: Gateway, monkeypatch) -> None:
    # The demo failed now and then: the retry rebuilt its envelope, whose inf_time had moved on by a second, and
    # the gateway rightly refused a different body under a used msgid. Here every envelope built differs.
    import itertools

    from gateway.app import demo

    assert gateway.sim.addresses is not None
    stamps = itertools.count()
    real = demo.envelope
    monkeypatch.setattr(demo, "envelope", lambda *a: real(*a) | {"inf_time": f"2026-11-25 08:00:{next(stamps):02d}"})
    run = DemoRun(gateway.config.api_socket, gateway.sim.addresses.admin, io.StringIO())
    query = {"data": {"mdtrt_cert_type": "02", "mdtrt_cert_no": "440301199001011234", "psn_cert_type": "01"}}
    _, msgid = await run.call("person query", "1101", await gateway.sign_in(), query)
    await run.call("retry", "1101", "", query, msgid=msgid)
    assert [s.ok for s in run.steps] == [True, True], run.out.getvalue()


async def test_the_demo_prints_its_lan_listener_and_a_lan_his_can_call_it() -> None:
    """`ybgate demo --tcp HOST:PORT` listens for LAN HIS workstations too and prints the URL to give them; a
    request there from an allowed address is relayed, and a bad one is refused in platform shape (HTTP 200)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "demo", "--tcp", "127.0.0.1:0", stdout=asyncio.subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        lines: list[str] = []
        while not lines or "Ctrl-C" not in lines[-1]:
            line = (await asyncio.wait_for(proc.stdout.readline(), 120)).decode()
            assert line, "".join(lines)
            lines.append(line)
        [url] = re.findall(r"LAN HIS \(TCP, policy client lan-his from 127.0.0.0/8\): (http://\S+)", "".join(lines))
        host, port, path = re.fullmatch(r"http://([0-9.]+):([0-9]+)(/\S+)", url).groups()  # type: ignore[union-attr]
        doc = fresh("9001_signin_request.json")
        ok = await request("POST", path, json.dumps(doc).encode(), host=host, port=int(port))
        assert ok.status == 200 and str(json.loads(ok.body)["infcode"]) == "0"
        bad = await request("POST", path, json.dumps(doc | {"msgid": "x"}).encode(), host=host, port=int(port))
        assert bad.status == 200 and json.loads(bad.body)["gateway_error"] == "bad_envelope"
    finally:
        proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(proc.wait(), 60) == 0
