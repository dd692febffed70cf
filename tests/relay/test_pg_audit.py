"""Evidence across a pair (#26): each gateway audits the outcomes it settled, once, in its own SM3 chain, and
`ybgate audit verify --node a=DIR --node b=DIR` finds every final row of the shared outbox in exactly one chain.
Two real Daemons on one real PostgreSQL database, the simulator as the platform."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

from pg_pair import Nodes
from test_check_refusals import _cli

from gateway.audit.log import AuditLog, audit_files

from conftest import Gateway, fresh


def outcomes(gw: Gateway) -> list[tuple[str, str]]:
    found = []
    for path in audit_files(gw.config.audit_dir):
        for raw in path.read_bytes().splitlines():
            entry = json.loads(raw)
            if entry.get("kind") == "outcome":
                found.append((entry["msgid"], entry["state"]))
    return found


async def settle(gw: Gateway, sign_no: str) -> str:
    doc = fresh("2207_settle_request.json", sign_no=sign_no)
    reply = await gw.post(doc)
    assert reply.status == 200 and str(json.loads(reply.body)["infcode"]) == "0", reply.body
    return str(doc["msgid"])


async def verify_pair(tmp_path: Path, pg_dsn_file: Path, *nodes: Gateway) -> subprocess.CompletedProcess[str]:
    # The ops host's configuration: it names the shared outbox (the demo gateways run without an identity, so
    # their chains carry unsigned checkpoints and there is no certificate to check them with).
    config = tmp_path / "ops.yaml"
    config.write_text(
        f"development: true\nstate_dir: {tmp_path / 'state'}\n"
        f"relay: {{outbox: {{backend: postgresql, dsn_file: {pg_dsn_file}}}}}\n"
        "upstreams: [{name: platform, host: 127.0.0.1, port: 9, transport: tcp}]\n"
    )
    specs = [f"--node={gw.config.relay.outbox.node}={gw.config.audit_dir}" for gw in nodes]
    return await asyncio.to_thread(_cli, "audit", "verify", *specs, "--settle", "0", "--config", str(config))


async def test_each_gateway_audits_what_it_settled_once_and_the_pair_verifies(
    pg_nodes: Nodes, tmp_path: Path, pg_dsn_file: Path
) -> None:
    a = await pg_nodes.start("a")
    sign_no = await a.sign_in()
    by_a = [await settle(a, sign_no) for _ in range(3)]
    # The old start-up catch-up read every row the shared database finished after the (empty) chain's end: B
    # appended A's outcomes to its own chain, and each of them was audited twice across the pair.
    b = await pg_nodes.start("b")
    assert not {m for m, _ in outcomes(b)} & set(by_a)
    by_b = [await settle(b, await b.sign_in()) for _ in range(2)]
    await pg_nodes.stop(a, b)
    assert {m for m, _ in outcomes(a)} >= set(by_a) and not {m for m, _ in outcomes(a)} & set(by_b)
    assert {m for m, _ in outcomes(b)} >= set(by_b)
    done = await verify_pair(tmp_path, pg_dsn_file, a, b)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "node a: chain ok" in done.stdout and "node b: chain ok" in done.stdout
    summary = done.stdout.splitlines()[-1]
    assert "0 missing, 0 doubled" in summary and summary.startswith(
        "node a 4 outcomes, node b 2 outcomes; 6 final rows"
    ), summary


async def test_a_node_catches_up_its_own_outcomes_after_a_crash_between_the_commits(
    pg_nodes: Nodes, tmp_path: Path, pg_dsn_file: Path
) -> None:
    a, b = await pg_nodes.start("a"), await pg_nodes.start("b")
    sign_no = await a.sign_in()
    await settle(a, sign_no)
    # B settles a row and dies before its audit entry is written (the outbox committed, the chain did not).
    assert b.daemon.outbox is not None
    b.daemon.outbox.on_final = None
    lost = await settle(b, await b.sign_in())
    await pg_nodes.stop(a, b)
    gap = await verify_pair(tmp_path, pg_dsn_file, a, b)
    assert gap.returncode == 1 and f"MISSING: {lost} answered settled by b" in gap.stderr, gap.stdout + gap.stderr
    b2 = await pg_nodes.start("b")  # a restart of node b: a new lease, the same name and chain
    await pg_nodes.stop(b2)
    assert (lost, "answered") in outcomes(b2) and (lost, "answered") not in outcomes(a)
    assert len(outcomes(b2)) == len(set(outcomes(b2)))
    done = await verify_pair(tmp_path, pg_dsn_file, a, b2)
    assert done.returncode == 0, done.stdout + done.stderr


async def test_an_outcome_in_both_chains_is_named(pg_nodes: Nodes, tmp_path: Path, pg_dsn_file: Path) -> None:
    a, b = await pg_nodes.start("a"), await pg_nodes.start("b")
    msgid = await settle(a, await a.sign_in())
    assert a.daemon.outbox is not None
    row = await a.daemon.outbox.get(msgid)
    assert row is not None
    await pg_nodes.stop(a, b)
    # What the old catch-up did: B's chain gets A's outcome, as a well-formed, chained entry.
    from gateway.app.storage import _outcome

    log = AuditLog(b.config.audit_dir)
    log.open()
    log.record([_outcome(row)])
    await log.close()
    done = await verify_pair(tmp_path, pg_dsn_file, a, b)
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"DOUBLED: {msgid} answered audited 2 times: a:audit-000001.jsonl:" in done.stderr, done.stderr
    assert ", b:audit-000001.jsonl:" in done.stderr and "node b: chain ok" in done.stdout
