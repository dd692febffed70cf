"""Against a running daemon, under traffic: a policy with an error on line N is refused with N and the old
policy stays in force; a good one applies at once; `ybgate policy reload` reports both."""

from __future__ import annotations

import asyncio
import json
import os
import socket
from pathlib import Path

from test_systemd import NotifySocket

from gateway.demo import DEMO_POLICY
from gateway.http1.unix_client import request
from gateway.sim.server import Simulator

from conftest import PLATFORM_PATH, fresh, ybgate_output, ybgate_process


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def policy_text(upstream: tuple[str, int], allow_signin: bool = True) -> str:
    text = DEMO_POLICY.format(uid=os.getuid(), upstreams=f"  - {{host: {upstream[0]}, port: {upstream[1]}}}\n")
    return text if allow_signin else text.replace('session: ["9001", "9002"]', 'session: ["9002"]')


async def metric(port: int, name: str) -> float:
    body = (await request("GET", "/metrics", host="127.0.0.1", port=port)).body.decode()
    return next((float(ln.rsplit(" ", 1)[1]) for ln in body.splitlines() if ln.startswith(name)), 0.0)


async def test_bad_policy_refused_with_its_line_under_traffic(sim: Simulator, short_tmp: Path) -> None:
    assert sim.addresses is not None
    upstream = sim.addresses.platform
    policies = short_tmp / "policies"
    policies.mkdir()
    pfile = policies / "10-his.yaml"
    pfile.write_text(policy_text(upstream))
    admin = free_port()
    cfg = short_tmp / "ybgate.yaml"
    cfg.write_text(
        f"development: true\nstate_dir: {short_tmp}/state\nruntime_dir: {short_tmp}/run\nadmin: {{port: {admin}}}\n"
        f"upstreams: [{{name: sim, host: {upstream[0]}, port: {upstream[1]}, transport: tcp}}]\n"
        f"policy: {{paths: [{policies}]}}\n"
    )
    notify = NotifySocket(short_tmp / "notify.sock")
    proc = await ybgate_process("run", "--config", str(cfg), env=os.environ | {"NOTIFY_SOCKET": str(notify.path)})
    sock = str(short_tmp / "run/api.sock")
    replies: list[tuple[str, int, str | None]] = []
    phase = "before"
    stop = asyncio.Event()

    async def his() -> None:
        while not stop.is_set():
            body = json.dumps(fresh("9001_signin_request.json")).encode()
            reply = await request("POST", PLATFORM_PATH, body, unix_socket=sock, time_limit=10)
            doc = json.loads(reply.body)
            replies.append((phase, reply.status, doc.get("err_msg")))
            await asyncio.sleep(0.01)

    try:
        await notify.until("READY=1")
        traffic = [asyncio.create_task(his()) for _ in range(3)]
        await asyncio.sleep(0.5)

        # Line 7 of the file gets a bad infno entry.
        lines = policy_text(upstream).splitlines()
        assert lines[6].startswith("  presettlement:")
        lines[6] = '  presettlement: ["2206", "23 03"]'
        pfile.write_text("\n".join(lines) + "\n")
        phase = "bad"
        code, out, err = await ybgate_output("policy", "reload", "--config", str(cfg))
        assert code == 1, (out, err)
        assert f"{pfile}:7:27: groups.presettlement[1]: '23 03' is not an infno" in err
        code, _, err = await ybgate_output("policy", "check", str(policies))
        assert code == 1 and f"{pfile}:7:27" in err
        await asyncio.sleep(0.5)
        assert await metric(admin, 'ybgate_policy_reloads_total{result="refused"}') == 1.0

        # A good policy without 9001: applied, and sign-ins are now refused by name.
        pfile.write_text(policy_text(upstream, allow_signin=False))
        phase = "switching"
        code, out, err = await ybgate_output("policy", "reload", "--config", str(cfg))
        assert code == 0 and "policy reloaded" in out, (out, err)
        phase = "after"
        await asyncio.sleep(0.5)
        stop.set()
        await asyncio.gather(*traffic)

        by_phase = {p: [(s, m) for ph, s, m in replies if ph == p] for p in ("before", "bad", "after")}
        assert by_phase["before"] and all(s == 200 for s, _ in by_phase["before"])
        # The refused policy never took effect: every request during that phase was served.
        assert len(by_phase["bad"]) > 10 and all(s == 200 for s, _ in by_phase["bad"])
        assert by_phase["after"] and all(s == 403 for s, _ in by_phase["after"])
        msg = by_phase["after"][0][1]
        assert msg is not None and "client demo-his for infno 9001" in msg and "default deny" in msg
        assert await metric(admin, 'ybgate_policy_denials_total{client="demo-his",kind="not_allowed"}') > 0
    finally:
        stop.set()
        proc.terminate()
        await proc.wait()
