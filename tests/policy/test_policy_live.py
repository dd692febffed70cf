"""The policy in a running daemon: denials reach the HIS with the rule that denied them, a policy with an
error on line N is refused while traffic flows (the old one stays in force), a good edit applies at once,
and the CLI tools (check, explain, diff, reload) as real subprocesses."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from gateway.http1.unix_client import request

from conftest import Gateway, fresh, until, ybgate_output

REPO = Path(__file__).resolve().parents[2]


def policy_file(gateway: Gateway) -> Path:
    assert gateway.config.policy is not None
    return gateway.config.policy.paths[0] / "demo.yaml"


async def metric(gateway: Gateway, name: str, **labels: str) -> float:
    assert gateway.daemon.admin_address is not None
    host, port = gateway.daemon.admin_address
    text = (await request("GET", "/metrics", host=host, port=port)).body.decode()
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return 0.0


def allow_only_sign_in_and_queries(gateway: Gateway) -> None:
    """A policy whose one client (this process's uid, line 2) may call 9001 and 1101 only."""
    policy_file(gateway).write_text(
        f'clients:\n  - name: cashier\n    unix: {{uids: [{os.getuid()}]}}\n    allow: ["9001", "1101"]\n'
        f"upstreams: [{{host: {gateway.config.upstreams[0].host}, port: {gateway.config.upstreams[0].port}}}]\n"
    )
    assert gateway.daemon.reload_policy()["result"] == "applied"


async def test_denial_names_the_rule_and_never_reaches_the_outbox(gateway: Gateway) -> None:
    allow_only_sign_in_and_queries(gateway)
    sign_no = await gateway.sign_in()
    doc = fresh("2207_settle_request.json", sign_no=sign_no)
    reply = await gateway.post(doc)
    body = json.loads(reply.body)
    # the client has no answer: knob, so the refusal comes platform-shaped: HTTP 200, the kind in body and header
    assert reply.status == 200 and body["gateway_error"] == "policy_denied" and str(body["infcode"]) == "-1"
    assert reply.headers.get("x-ybgate-error") == "policy_denied"
    assert "client cashier may not call 2207: allowed 9001, 1101" in body["err_msg"]
    assert f"{policy_file(gateway)}:2:11" in body["err_msg"]
    assert gateway.daemon.outbox is not None and await gateway.daemon.outbox.get(str(doc["msgid"])) is None
    assert [m.infno for m in gateway.sim.ledger.messages] == ["9001"]
    assert await metric(gateway, "ybgate_policy_denials_total", kind="policy_denied", client="cashier") == 1


async def test_a_duplicate_infno_cannot_pass_a_settlement_as_a_query(gateway: Gateway) -> None:
    """(#20) A client allowed 1101 only sends a settlement with a second "infno": "1101" after the first: classed and
    policed by the last key it passed as a query and was forwarded as sent, to a platform that may read the first."""
    allow_only_sign_in_and_queries(gateway)
    sign_no = await gateway.sign_in()
    doc = fresh("2207_settle_request.json", sign_no=sign_no)
    raw = json.dumps(doc, ensure_ascii=False).encode()
    raw = raw[:-1] + b', "infno": "1101"}'
    reply = await gateway.post(raw)
    body = json.loads(reply.body)
    assert body["gateway_error"] == "duplicate_key" and str(body["infcode"]) == "-1"
    assert "names the key 'infno' twice" in body["err_msg"]
    assert gateway.daemon.outbox is not None and await gateway.daemon.outbox.get(str(doc["msgid"])) is None
    assert [m.infno for m in gateway.sim.ledger.messages] == ["9001"]


async def test_bad_policy_under_traffic_is_refused_and_the_old_one_stays(gateway: Gateway, short_tmp: Path) -> None:
    sign_no = await gateway.sign_in()
    good = policy_file(gateway).read_text()
    results: list[tuple[int, int]] = []  # (the phase the request was sent in, its status)
    phase = 0  # 0 before the refused reload, 1 after it, 2 after the good one
    stop = asyncio.Event()

    async def cashier() -> None:
        while not stop.is_set():
            sent_in = phase
            reply = await gateway.post(fresh("1101_query_request.json", sign_no=sign_no))
            results.append((sent_in, reply.status))

    def answered_in(n: int) -> list[int]:
        return [status for sent_in, status in results if sent_in == n]

    clients = [asyncio.create_task(cashier()) for _ in range(3)]
    await until(lambda: len(results) >= 3)  # traffic is flowing
    # Line 8 names a group nobody defined: the whole file is refused, with its line.
    policy_file(gateway).write_text(good.replace("allow: [everything]", "allow: [everything]\n    deny: [queriez]"))
    cfg = short_tmp / "ops.yaml"
    cfg.write_text(
        f"development: true\nstate_dir: {gateway.config.state_dir}\nruntime_dir: {gateway.config.runtime_dir}\n"
        f"policy: {{paths: [{policy_file(gateway).parent}]}}\n"
        "upstreams: [{name: s, host: 127.0.0.1, port: 1, transport: tcp}]\n"
    )
    code, _, err = await ybgate_output("policy", "reload", "--config", str(cfg))
    assert code == 1 and f"{policy_file(gateway)}:8:12: clients[0].deny[0]" in err and "queriez" in err
    phase = 1
    assert await metric(gateway, "ybgate_policy_reloads_total", result="refused") == 1
    # The HIS never noticed: every request during and after the refused reload was answered.
    await until(lambda: len(answered_in(1)) >= 3)
    assert set(answered_in(0) + answered_in(1)) == {200}
    # A good edit that drops 1101 applies at once: the next queries are refused.
    policy_file(gateway).write_text(good.replace('everything: ["*"]', 'everything: ["9001"]'))
    code, out, _ = await ybgate_output("policy", "reload", "--config", str(cfg))
    assert code == 0 and "in force" in out
    phase = 2
    await until(lambda: len(answered_in(2)) >= 3)
    stop.set()
    await asyncio.gather(*clients)
    assert set(answered_in(2)) == {403}
    status = json.loads(
        (
            await request("GET", "/status", host=gateway.daemon.admin_address[0], port=gateway.daemon.admin_address[1])
        ).body  # type: ignore[index]
    )
    assert status["policy"]["files"] == [str(policy_file(gateway))]


async def test_sighup_reload_refuses_a_bad_policy(gateway: Gateway) -> None:
    good = policy_file(gateway).read_text()
    policy_file(gateway).write_text(good + "upstreams: [{host: example.org, port: 1}]\n")
    assert gateway.daemon.reload_policy()["result"] == "refused"
    reply = await gateway.post(fresh("9001_signin_request.json"))
    assert reply.status == 200  # the old policy allows it still


async def test_policy_cli_check_explain_diff(tmp_path: Path) -> None:
    code, out, _ = await ybgate_output("policy", "check", str(REPO / "policies"))
    assert code == 0 and "3 client(s), 2 upstream(s)" in out
    bad = tmp_path / "bad.yaml"
    bad.write_text('clients:\n  - name: a\n    unix: {uids: [1]}\n    allow: ["1101", settlment]\n')
    code, _, err = await ybgate_output("policy", "check", str(bad))
    assert code == 1 and f"{bad}:4:21: clients[0].allow[1]: 'settlment' is neither" in err
    code, out, _ = await ybgate_output(
        "policy",
        "explain",
        str(REPO / "policies"),
        "--client",
        "gid=1500",
        "--infno",
        "2207",
        "--at",
        "2026-11-25 10:00",
    )
    assert code == 0 and out.startswith("ALLOW 2207 for gid=1500: client his-outpatient may call 2207")
    code, out, _ = await ybgate_output(
        "policy",
        "explain",
        str(REPO / "policies"),
        "--client",
        "ip=10.20.30.9",
        "--infno",
        "2207",
        "--upstream",
        "10.9.9.9:443",
    )
    assert code == 1 and "DENY 2207 for ip=10.20.30.9: client self-service-kiosks may not call 2207" in out
    assert "DENY upstream 10.9.9.9:443: not in the upstream whitelist" in out
    old, new = tmp_path / "old.yaml", tmp_path / "new.yaml"
    old.write_text(
        'clients:\n  - name: a\n    unix: {uids: [1]}\n    allow: ["1101"]\nupstreams: [{host: 10.0.0.1, port: 1}]\n'
    )
    new.write_text(
        'clients:\n  - name: a\n    unix: {uids: [1]}\n    allow: ["1101", "2207"]\n'
        '  - name: b\n    tcp: {cidrs: [10.0.0.0/8]}\n    allow: ["5*"]\n'
    )
    code, out, _ = await ybgate_output("policy", "diff", str(old), str(new))
    assert code == 0
    assert "+ client a gains 2207" in out and "+ client b (tcp 10.0.0.0/8) may call 5*" in out
    assert "- upstream 10.0.0.1:1 may no longer be reached" in out
