"""Issue #11, clock jumps: the gateway process runs under libfaketime, and its wall clock is stepped a day forward
and two days back while settlements are in doubt (as NTP does after a long drift, or an operator with `date`).
The monotonic clocks are left alone, as the kernel does.

What must not move with the wall clock: the settle time before a 冲正 that finds nothing is believed. Stepped
forward, a gateway timing it on the wall clock would report a settlement never booked while the platform still
books it (the HIS told to retry: a double charge); stepped back, it would leave the settlement unresolved for
days. The simulator runs in the test process on the true clock: it is the platform, and its ledger is the truth.
"""

from __future__ import annotations

import asyncio
import glob
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from daemonproc import free_port, ready, start, write_config

from gateway.http1.unix_client import request
from gateway.sim.server import Simulator

from conftest import PLATFORM_PATH, example, fresh, fresh_msgid

#: libfaketime's multi-threaded build: the daemon commits the outbox from a worker thread
LIBFAKETIME = sorted(glob.glob("/usr/lib/*/faketime/libfaketimeMT.so.1"))
SETTLE = 2.0
#: the HIS's deadline: the settlement goes in doubt after it
DEADLINE = 1.5
#: the platform books the settlement this long after receiving it: after the HIS's deadline, before the settle time
LANDS = 3.0
#: and answers the first 冲正 this late, so the test can step the clock between the doubt and that answer
REVERSAL_LAG = 0.8


def faketime_env(offset_file: Path) -> dict[str, str]:
    return os.environ | {
        "LD_PRELOAD": LIBFAKETIME[-1],
        "FAKETIME_TIMESTAMP_FILE": str(offset_file),
        "FAKETIME_NO_CACHE": "1",  # read the offset on every call: a step takes effect at once
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
    }


async def post(sock: str, doc: dict[str, Any], wait: float = DEADLINE) -> dict[str, Any]:
    reply = await request(
        "POST",
        PLATFORM_PATH,
        json.dumps(doc, ensure_ascii=False).encode(),
        unix_socket=sock,
        headers=[("X-Ybgate-Timeout", str(wait))],
        time_limit=wait + 5,
    )
    return dict(json.loads(reply.body))


async def definite(sock: str, doc: dict[str, Any], limit: float) -> tuple[str, float]:
    """Ask again with the same msgid, as a HIS does, until the answer is definite; (kind, seconds taken)."""
    started = time.monotonic()
    while time.monotonic() - started < limit:
        answer = await post(sock, doc)
        kind = answer.get("gateway_error") or "answered"
        if kind not in ("outcome_unknown", "in_progress"):
            return kind, time.monotonic() - started
        await asyncio.sleep(0.2)
    raise AssertionError(f"{doc['msgid']}: no definite answer within {limit} s")


async def test_wall_clock_steps_do_not_move_the_settle_time(sim: Simulator, short_tmp: Path) -> None:
    if not LIBFAKETIME:
        pytest.skip("libfaketime is not installed (apt-get install faketime)")
    assert sim.addresses is not None
    offset = short_tmp / "faketime"
    offset.write_text("+0\n")
    admin_port = free_port()
    cfg = write_config(short_tmp, sim.addresses.platform, admin_port, f"relay: {{reversal_settle: {SETTLE}}}\n")
    proc = await start(cfg, faketime_env(offset))
    sock = str(short_tmp / "run/api.sock")
    try:
        sign_no = await ready(sock)
        status = await request("GET", "/status", host="127.0.0.1", port=admin_port)
        uptime_before = json.loads(status.body)["uptime_s"]
        for n, step in enumerate(("+1d", "-1d")):
            data = example("2207_settle_request.json")["input"]["data"] | {
                "psn_no": f"44000000000000009{n:03d}",
                "chrg_bchno": f"CB{fresh_msgid()[-12:]}",
            }
            doc = fresh("2207_settle_request.json", sign_no=sign_no, input={"data": data})
            sim.faults.set("2207", {"kind": "delay", "delay": LANDS})
            sim.faults.set("2601", {"kind": "delay", "delay": REVERSAL_LAG})
            first = await post(doc=doc, sock=sock)
            assert first.get("gateway_error") == "outcome_unknown", first  # in doubt, a 冲正 on its way
            offset.write_text(step + "\n")
            kind, took = await definite(sock, doc, limit=30)
            booked = sim.ledger.by_msgid(doc["msgid"], "2207")
            # The original landed at LANDS, after the first 冲正 found nothing; only a 冲正 sent after the settle
            # time (on the monotonic clock) finds and reverses it. Reporting "not processed" would leave it booked.
            assert kind == "reversed", (step, kind, [b.state for b in booked])
            assert [b.state for b in booked] == ["reversed"], step
            # Stepped back a day, a settle time on the wall clock would have waited that day: the definite answer
            # came at all (definite() gives up after 30 s), so the settle clock is monotonic.
            print(f"clock stepped {step}: definite answer after {took:.1f} s (settle time {SETTLE} s)")
            # Queries pass through while the clock is off.
            query = await post(sock, fresh("1101_query_request.json", sign_no=sign_no))
            assert str(query["infcode"]) == "0", query
        status = await request("GET", "/status", host="127.0.0.1", port=admin_port)
        uptime_after = json.loads(status.body)["uptime_s"]
        # the uptime did not jump with the wall clock (by a day either way)
        assert uptime_before <= uptime_after < uptime_before + 3600, (uptime_before, uptime_after)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 15) == 0
