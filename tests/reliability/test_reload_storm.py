"""Issue #11, a policy reload storm under load: a real daemon process reloads its policy many times a second,
alternating two valid policies and a broken one, through SIGHUP and the control socket, while HIS clients keep
calling. Every request is answered by the old or the new policy, never anything else; a broken file never takes
effect; nothing leaks.

    YBGATE_STORM_RELOADS=2000 pytest tests/reliability/test_reload_storm.py   # the long run
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
from collections import Counter
from pathlib import Path

from daemonproc import free_port, ready, start, write_config
from prometheus_client.parser import text_string_to_metric_families

from gateway.http1.unix_client import request
from gateway.sim.server import Simulator

from conftest import PLATFORM_PATH, fresh, until

RELOADS = int(os.environ.get("YBGATE_STORM_RELOADS", "150"))
CLIENTS = 4

#: 9001 and 1101 allowed: queries answered
OPEN = """\
groups:
  queries: ["9001", "1101"]
clients:
  - name: cashier
    unix: {{uids: [{uid}]}}
    allow: [queries]
    answer: http_status
upstreams:
  - {{host: {host}, port: {port}}}
"""
#: 1101 no longer allowed: queries refused with the rule that refused them
CLOSED = OPEN.replace('queries: ["9001", "1101"]', 'queries: ["9001"]')
#: a group nobody defined on line 6: the whole file is refused and the policy in force stays
BROKEN = OPEN.replace("allow: [queries]", "allow: [queriez]")


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


async def metric(port: int, name: str, **labels: str) -> float:
    text = (await request("GET", "/metrics", host="127.0.0.1", port=port)).body.decode()
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return 0.0


async def _more(port: int, before: float) -> bool:
    return await metric(port, "ybgate_policy_reloads_total", result="refused") > before


async def test_policy_reload_storm_under_load(sim: Simulator, short_tmp: Path) -> None:
    assert sim.addresses is not None
    host, port = sim.addresses.platform
    policy_dir = short_tmp / "policy"
    policy_dir.mkdir()
    policy = policy_dir / "storm.yaml"
    texts = {
        name: text.format(uid=os.getuid(), host=host, port=port)
        for name, text in (("open", OPEN), ("closed", CLOSED), ("broken", BROKEN))
    }
    policy.write_text(texts["open"])
    admin_port = free_port()
    cfg = write_config(short_tmp, (host, port), admin_port, f"policy: {{paths: [{policy_dir}]}}\n")
    proc = await start(cfg)
    sock, control = str(short_tmp / "run/api.sock"), str(short_tmp / "run/control.sock")
    answers: Counter[str] = Counter()
    stop = asyncio.Event()
    try:
        sign_no = await ready(sock)

        async def cashier() -> None:
            while not stop.is_set():
                try:
                    reply = await request(
                        "POST",
                        PLATFORM_PATH,
                        json.dumps(fresh("1101_query_request.json", sign_no=sign_no)).encode(),
                        unix_socket=sock,
                        time_limit=10,
                    )
                except (OSError, TimeoutError) as exc:
                    answers[type(exc).__name__] += 1
                    continue
                body = json.loads(reply.body)
                if reply.status == 200 and str(body["infcode"]) == "0":
                    answers["answered"] += 1
                elif reply.status == 403 and "may not call 1101" in body["err_msg"]:
                    answers["denied"] += 1  # CLOSED in force
                else:
                    answers[f"{reply.status} {body.get('gateway_error')}: {body.get('err_msg')}"] += 1

        fds_before, rss_before = fd_count(proc.pid), rss_mib(proc.pid)
        clients = [asyncio.create_task(cashier()) for _ in range(CLIENTS)]
        rng = random.Random(11)
        outcomes: Counter[str] = Counter()
        last_valid = "open"
        for i in range(RELOADS):
            name = rng.choice(["open", "closed", "broken"])
            # Written whole and renamed into place, as a config tool does; a torn read would only be refused.
            staged = policy_dir / ".storm.yaml.new"
            staged.write_text(texts[name])
            staged.replace(policy)
            if i % 2:
                # SIGHUP reloads config and policy: its outcome shows in the metrics, checked below.
                proc.send_signal(signal.SIGHUP)
                outcomes[f"sighup {name}"] += 1
            else:
                reply = await request("POST", "/policy/reload", b"", unix_socket=control, time_limit=10)
                result = json.loads(reply.body)["result"]
                assert result == ("refused" if name == "broken" else "applied"), (name, result)
                outcomes[f"control {name} {result}"] += 1
            if name != "broken":
                last_valid = name
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.5)  # the last SIGHUP, if any, is handled
        stop.set()
        await asyncio.gather(*clients)
        # A SIGHUP reads whatever file is there when the loop gets to it, so the storm's own last valid file may
        # have been replaced before it was read. The end is made definite: a valid policy through the control
        # socket, then a broken file by SIGHUP, which must leave that policy in force.
        last_valid = "closed" if last_valid == "open" else "open"
        for name in (last_valid, "broken"):
            staged = policy_dir / ".storm.yaml.new"
            staged.write_text(texts[name])
            staged.replace(policy)
            if name == "broken":
                before = await metric(admin_port, "ybgate_policy_reloads_total", result="refused")
                proc.send_signal(signal.SIGHUP)
                outcomes["sighup broken"] += 1
                # handled (and refused): what the probe below sees is the policy after it, not before it
                await until(lambda b=before: _more(admin_port, b))
            else:
                reply = await request("POST", "/policy/reload", b"", unix_socket=control, time_limit=10)
                assert json.loads(reply.body)["result"] == "applied"
                outcomes[f"control {name} applied"] += 1

        # Only the two policies' answers, never an error of a half-applied one or a dropped request.
        assert set(answers) <= {"answered", "denied"}, answers
        assert answers["answered"] > 0 and answers["denied"] > 0, answers
        # Denied requests never reached the platform; each answered one reached it once.
        assert sum(1 for m in sim.ledger.messages if m.infno == "1101") == answers["answered"]
        # The policy in force is the last valid one applied, whatever broken file came after it.
        probe = await request(
            "POST",
            PLATFORM_PATH,
            json.dumps(fresh("1101_query_request.json", sign_no=sign_no)).encode(),
            unix_socket=sock,
        )
        assert probe.status == (200 if last_valid == "open" else 403), (last_valid, probe.body)
        # A control-socket reload is synchronous: its result is known. A SIGHUP is handled when the loop gets to
        # it, reading whatever file is there by then (and two close together may fold into one).
        control_refused = outcomes["control broken refused"]
        control_applied = outcomes["control open applied"] + outcomes["control closed applied"]
        sighups = sum(n for k, n in outcomes.items() if k.startswith("sighup"))
        refused = await metric(admin_port, "ybgate_policy_reloads_total", result="refused")
        applied = await metric(admin_port, "ybgate_policy_reloads_total", result="applied")
        assert control_refused <= refused <= control_refused + sighups, (outcomes, refused)
        assert control_applied <= applied <= control_applied + sighups, (outcomes, applied)
        assert refused + applied >= control_refused + control_applied + 1  # some SIGHUPs were handled
        # Nothing leaks across the storm: descriptors settle back, memory does not climb with each reload.
        fds_after, rss_after = fd_count(proc.pid), rss_mib(proc.pid)
        assert fds_after <= fds_before + CLIENTS + 2, (fds_before, fds_after)
        # The YAML loader once kept every document it read alive (about 37 KiB a reload, 5.5 MiB over 150 reloads,
        # 74 MiB over 2000); with that fixed the storm adds under 1 MiB at either scale.
        assert rss_after - rss_before < 4, (rss_before, rss_after)
        print(
            f"\n{RELOADS} reloads ({dict(outcomes)}); HIS answers {dict(answers)}; "
            f"fds {fds_before} -> {fds_after}; RSS {rss_before:.1f} -> {rss_after:.1f} MiB"
        )
    finally:
        stop.set()
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 15) == 0
