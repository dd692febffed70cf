"""The relay on PostgreSQL end to end: DurableRelay through the real socket and the simulator with its outbox in
a real database (relay.outbox.backend: postgresql), two gateways on one database, and `ybgate check` telling
ops in one line that the database does not answer or refuses the login."""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pg_cluster
import pytest
import pytest_asyncio
from pg_pair import Nodes, on_postgresql
from test_check_refusals import Setup, _cli

from gateway.app.daemon import Daemon
from gateway.app.demo import demo_config
from gateway.relay.pg_outbox import PgOutbox
from gateway.sim.server import Simulator

from conftest import Gateway, fresh


@pytest_asyncio.fixture
async def pair(sim: Simulator, pg_dsn_file: Path) -> AsyncIterator[tuple[Gateway, Gateway]]:
    """Two gateways (two Daemons, each its own state directory and sockets) on one outbox database."""
    assert sim.addresses is not None
    roots = [Path(tempfile.mkdtemp(prefix="ybg-")) for _ in range(2)]
    daemons = []
    try:
        for root in roots:
            config = on_postgresql(demo_config(root, sim.addresses.platform, level="warning"), pg_dsn_file)
            daemon = Daemon(config)
            await daemon.start()
            daemons.append(Gateway(daemon, config, sim))
        yield daemons[0], daemons[1]
    finally:
        for gw in daemons:
            await gw.daemon.stop(grace=1.0)
        for root in roots:
            shutil.rmtree(root, ignore_errors=True)


async def test_the_relay_runs_on_postgresql(pair: tuple[Gateway, Gateway]) -> None:
    a, _ = pair
    assert isinstance(a.daemon.outbox, PgOutbox)
    sign_no = await a.sign_in()
    settle = fresh("2207_settle_request.json", sign_no=sign_no)
    first, again = await a.post(settle), await a.post(settle)
    assert first.status == again.status == 200 and first.body == again.body
    assert str(json.loads(first.body)["infcode"]) == "0"
    assert [s.state for s in a.sim.ledger.by_msgid(settle["msgid"])] == ["booked"]
    conflict = await a.post(settle | {"opter": "0099"})
    assert conflict.status == 409 and json.loads(conflict.body)["gateway_error"] == "msgid_conflict"
    row = await a.daemon.outbox.get(settle["msgid"])
    assert row is not None and row.state.value == "answered"


async def test_the_same_msgid_at_both_gateways_is_sent_once_with_one_answer(pair: tuple[Gateway, Gateway]) -> None:
    """A HIS that retries at the other node (or two workstations racing) never causes a second send, and gets the
    one answer: the msgid is unique in the database, one node sends, and the other waits for its row to settle
    (the old code answered "outcome unknown" from the node that did not send)."""
    a, b = pair
    sign_no = await a.sign_in()
    a.sim.faults.set("2207", {"kind": "delay", "delay": 0.5, "times": 1})
    settle = fresh("2207_settle_request.json", sign_no=sign_no)
    replies = await asyncio.gather(a.post(settle), b.post(settle), a.post(settle), b.post(settle))
    assert {r.status for r in replies} == {200} and len({r.body for r in replies}) == 1
    assert str(json.loads(replies[0].body)["infcode"]) == "0"
    assert len(a.sim.ledger.by_msgid(settle["msgid"])) == 1
    conflict = await b.post(settle | {"opter": "0099"})
    assert conflict.status == 409


@pytest.mark.parametrize("fault", ["none", "wrong password", "no server"])
def test_check_names_an_unusable_database_in_one_line(
    tmp_path: Path, pg: pg_cluster.Cluster, pg_dsn_file: Path, fault: str
) -> None:
    setup = Setup(tmp_path)
    dsn = pg_dsn_file.read_text().strip()
    if fault == "wrong password":
        dsn = dsn.replace(pg_cluster.PASSWORD, "Wr0ng-Secret-42")
    elif fault == "no server":
        dsn = dsn.replace(str(pg.socket_dir), str(tmp_path))
    pg_dsn_file.write_text(dsn)
    setup.config.write_text(
        setup.config.read_text() + f"relay: {{outbox: {{backend: postgresql, dsn_file: {pg_dsn_file}}}}}\n"
    )
    done = _cli("check", "--config", str(setup.config))
    output = done.stdout + done.stderr
    assert pg_cluster.PASSWORD not in output and "Wr0ng-Secret-42" not in output
    if fault == "none":
        assert done.returncode == 0, output
        return
    lines = [line for line in done.stderr.splitlines() if line.startswith("relay.outbox:")]
    kind = "InvalidPasswordError" if fault == "wrong password" else "unavailable"
    assert len(lines) == 1 and kind in lines[0] and str(pg_dsn_file) in lines[0], output
    assert done.returncode == 1


def test_the_postgresql_backend_needs_its_dsn_file(tmp_path: Path) -> None:
    from pydantic import ValidationError

    from gateway.config import OutboxStore

    with pytest.raises(ValidationError, match=r"needs relay\.outbox\.dsn_file"):
        OutboxStore(backend="postgresql")
    assert OutboxStore().backend == "sqlite"  # nothing changes for a single host


def config_on_postgresql(root: Path, dsn_file: Path) -> Setup:
    setup = Setup(root)
    setup.config.write_text(
        setup.config.read_text() + f"relay: {{outbox: {{backend: postgresql, dsn_file: {dsn_file}}}}}\n"
    )
    return setup


async def test_ops_read_the_shared_outbox(tmp_path: Path, pg: pg_cluster.Cluster, pg_dsn_file: Path) -> None:
    # `ybgate outbox list|show` read the database the configuration names (they read only the local SQLite file
    # before); a database that refuses the login is one line, without the DSN.
    from gateway.crypto import sm3
    from gateway.platform.catalogue import TxClass

    box = PgOutbox(pg_dsn_file, digest=sm3, node="node-a")
    await box.start()
    try:
        msgid = "H44030000001202612050800009999"
        body = json.dumps({"infno": "2207", "msgid": msgid, "input": {"data": {"psn_no": "P1"}}}).encode()
        await box.accept(
            msgid=msgid, infno="2207", tx_class=TxClass.MONEY_MOVING, psn_no="P1", body=body, deadline=None, send=True
        )
    finally:
        await box.stop()
    setup = await asyncio.to_thread(config_on_postgresql, tmp_path, pg_dsn_file)
    listed = await asyncio.to_thread(_cli, "outbox", "list", "--config", str(setup.config))
    assert listed.returncode == 0, listed.stderr
    [line] = listed.stdout.splitlines()
    assert msgid in line and "sending" in line and "2207" in line
    shown = await asyncio.to_thread(_cli, "outbox", "show", msgid, "--config", str(setup.config))
    assert shown.returncode == 0, shown.stderr
    doc = json.loads(shown.stdout)
    assert doc["msgid"] == msgid and doc["state"] == "sending" and doc["request"]["infno"] == "2207"
    missing = await asyncio.to_thread(_cli, "outbox", "show", "H" * 30, "--config", str(setup.config))
    assert missing.returncode == 1 and "no request with msgid" in missing.stderr
    await asyncio.to_thread(
        lambda: pg_dsn_file.write_text(pg_dsn_file.read_text().replace(pg_cluster.PASSWORD, "Wr0ng-Secret-42"))
    )
    refused = await asyncio.to_thread(_cli, "outbox", "list", "--config", str(setup.config))
    assert refused.returncode == 1 and "InvalidPasswordError" in refused.stderr
    assert "Wr0ng-Secret-42" not in refused.stderr + refused.stdout and "Traceback" not in refused.stderr


def test_backup_and_restore_point_to_the_database_for_a_shared_outbox(tmp_path: Path, pg_dsn_file: Path) -> None:
    setup = config_on_postgresql(tmp_path, pg_dsn_file)
    for args in (("backup", str(tmp_path / "b")), ("restore", str(tmp_path / "b"))):
        done = _cli(*args, "--config", str(setup.config))
        assert done.returncode == 1 and "pg_dump" in done.stderr and "Traceback" not in done.stderr, done.stderr
        assert not (tmp_path / "b").exists()


async def test_a_person_s_settlements_keep_their_order_across_the_pair(pg_nodes: Nodes) -> None:
    """A cashier's next settlement for the same person reaches the other gateway while the first is still being
    sent by this one: it waits for the first's answer and is sent after it, as on one gateway (the old code
    refused it at once: "an earlier transaction for this person is still unresolved")."""
    a, b = await pg_nodes.start("a"), await pg_nodes.start("b")
    sign_no = await a.sign_in()
    a.sim.faults.set("2207", {"kind": "delay", "delay": 1.0, "times": 1})
    first = fresh("2207_settle_request.json", sign_no=sign_no)
    second = fresh("2207_settle_request.json", sign_no=sign_no)  # the same person (the example's psn_no)
    sending = asyncio.create_task(a.post(first))
    assert a.daemon.outbox is not None
    for _ in range(200):
        row = await a.daemon.outbox.get(first["msgid"])
        if row is not None and row.state.value == "sending":
            break
        await asyncio.sleep(0.01)
    later = await b.post(second)
    earlier = await sending
    for reply in (earlier, later):
        assert reply.status == 200 and str(json.loads(reply.body)["infcode"]) == "0", reply.body
    # the platform holds the first a second before it books it: had the second been sent meanwhile, it would
    # have been booked first
    booked = [s.msgid for s in a.sim.ledger.settlements]
    assert booked.index(first["msgid"]) < booked.index(second["msgid"]), booked
