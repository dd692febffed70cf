"""The relay's decision table (gateway/relay/rules.py): complete, consistent, and the one thing the live path, ops
resolution and recovery follow.

The fault test runs every row of the table through a real gateway and simulator: the platform books the request
and its answer is lost, and what the gateway then does (send again, 冲正, query, leave in doubt) must be what the
row says. The row's rule is laid on a carrier transaction the simulator can play for it (a query for a re-send, a
fee upload for a check, a settlement otherwise). The last test changes one entry and sees all three paths
follow it.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from gateway.app.daemon import Daemon
from gateway.app.demo import demo_config
from gateway.platform.catalogue import TxClass, national
from gateway.relay import rules
from gateway.relay.outcomes import NothingToResolve
from gateway.relay.rules import TABLE, IfAbsent, Kind, Plan, Rule, kind_of
from gateway.relay.states import RowState
from gateway.sim.server import Simulator

from conftest import Gateway, fresh


def test_every_kind_has_exactly_one_row() -> None:
    kinds = {Kind(c, r, q) for c, r, q in itertools.product(TxClass, (False, True), (False, True))}
    assert set(TABLE) == kinds


def test_rows_are_consistent() -> None:
    for kind, rule in TABLE.items():
        assert rule.plan is not Plan.REVERSE or (kind.reversible and kind.tx_class is TxClass.MONEY_MOVING), kind
        assert rule.plan is not Plan.CHECK or kind.check, kind
        assert not rule.resend or kind.tx_class is TxClass.SAFE, kind  # only a query may go twice
        assert (rule.plan is Plan.BY_ORIGINAL) == (kind.tx_class is TxClass.RESOLVER), kind
    # the outbox orders a person's work by the stored class: every row of a class must agree
    for cls in TxClass:
        assert len({rule.ordered for kind, rule in TABLE.items() if kind.tx_class is cls}) == 1, cls
    with pytest.raises(ValueError, match="CHECK"):
        Rule(resend=False, plan=Plan.OPS, if_absent=IfAbsent.RESEND)


def test_the_national_catalogue_lands_where_the_readme_says() -> None:
    cat = national()
    assert rules.plan_for(cat.classify("2207")) is Plan.REVERSE
    assert rules.plan_for(cat.classify("2204")) is Plan.CHECK
    assert rules.rule_for(cat.classify("2204")).if_absent is IfAbsent.RESEND
    assert rules.rule_for(cat.classify("2201")).if_absent is IfAbsent.NOT_PROCESSED
    assert rules.rule_for(cat.classify("1101")).resend
    assert rules.plan_for(cat.classify("9999")) is Plan.OPS  # unknown: money-moving, nothing to ask
    assert rules.ordered_classes() == {TxClass.MONEY_MOVING}


def _carrier(rule: Rule) -> str:
    if rule.resend:
        return "1101"
    if rule.plan is Plan.CHECK:
        return "2204"
    return "2207"


def _request(infno: str, sign_no: str) -> dict[str, object]:
    if infno == "1101":
        return fresh("1101_query_request.json", sign_no=sign_no)
    if infno == "2204":
        line = {"feedetl_sn": "1", "mdtrt_id": "MD-RULES-1", "psn_no": "44000000000000000012"}
        return fresh("2207_settle_request.json", infno="2204", sign_no=sign_no, input={"feedetail": [line]})
    return fresh("2207_settle_request.json", sign_no=sign_no)


async def _final_or_in_doubt(gw: Gateway, msgid: str) -> RowState:
    assert gw.daemon.outbox is not None and gw.daemon.relay is not None
    async with asyncio.timeout(10):
        while True:
            row = await gw.daemon.outbox.get(msgid)
            assert row is not None
            if row.state.final or (row.state is RowState.IN_DOUBT and msgid not in gw.daemon.relay.resolver.tasks):
                return row.state
            await asyncio.sleep(0.02)


@pytest_asyncio.fixture
async def quick(sim: Simulator, short_tmp: Path) -> AsyncIterator[Gateway]:
    """A gateway whose settle time is short, so checks and 冲正s that find nothing decide at once."""
    assert sim.addresses is not None
    config = demo_config(short_tmp, sim.addresses.platform, level="warning")
    config = config.model_copy(update={"relay": config.relay.model_copy(update={"reversal_settle": 0.1})})
    daemon = Daemon(config)
    await daemon.start()
    yield Gateway(daemon, config, sim)
    await daemon.stop(grace=1.0)


@pytest.mark.parametrize(
    "kind", list(TABLE), ids=lambda k: f"{k.tx_class.value}-rev{int(k.reversible)}-chk{int(k.check)}"
)
async def test_a_lost_answer_is_handled_as_the_row_says(
    kind: Kind, quick: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    rule = TABLE[kind]
    infno = _carrier(rule)
    catalogue = quick.daemon.relay.catalogue  # type: ignore[union-attr]
    monkeypatch.setitem(TABLE, kind_of(catalogue.classify(infno)), rule)
    sign_no = await quick.sign_in()
    doc = _request(infno, sign_no)
    quick.sim.faults.set(infno, {"kind": "drop_after", "times": 1})  # booked, answer lost
    reply = json.loads((await quick.post(doc)).body)
    state = await _final_or_in_doubt(quick, str(doc["msgid"]))
    sent = [m.infno for m in quick.sim.ledger.messages]
    if rule.resend:
        assert str(reply["infcode"]) == "0"
        assert state is RowState.ANSWERED and sent.count(infno) == 2
    elif rule.plan is Plan.REVERSE:
        assert state is RowState.REVERSED and "2601" in sent and reply["gateway_error"] == "reversed"
    elif rule.plan is Plan.CHECK:
        assert state is RowState.CONFIRMED and "5204" in sent and sent.count(infno) == 1
    else:  # OPS, BY_ORIGINAL: nothing the gateway may ask
        assert state is RowState.IN_DOUBT and reply["gateway_error"] == "outcome_unknown"
        assert sent.count(infno) == 1 and "2601" not in sent and "5204" not in sent


async def test_changing_one_entry_changes_the_live_path_ops_and_recovery(
    sim: Simulator, short_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A settlement whose answer is lost is reversed by the shipped table. With its row changed to "ops": the
    live path leaves it in doubt, `ybgate outbox resolve --auto` refuses, and a restart leaves it in doubt too;
    with the row restored, the next restart reverses it."""
    assert sim.addresses is not None
    config = demo_config(short_tmp, sim.addresses.platform, level="warning")
    settlement = Kind(TxClass.MONEY_MOVING, reversible=True, check=False)
    shipped = TABLE[settlement]
    monkeypatch.setitem(TABLE, settlement, Rule(resend=False, plan=Plan.OPS, ordered=True))

    daemon = Daemon(config)
    await daemon.start()
    try:
        gw = Gateway(daemon, config, sim)
        sign_no = await gw.sign_in()
        doc = fresh("2207_settle_request.json", sign_no=sign_no)
        msgid = str(doc["msgid"])
        sim.faults.set("2207", {"kind": "drop_after", "times": 1})
        reply = json.loads((await gw.post(doc)).body)
        assert reply["gateway_error"] == "outcome_unknown"  # live path: left in doubt, no 冲正
        assert await _final_or_in_doubt(gw, msgid) is RowState.IN_DOUBT
        assert daemon.relay is not None
        with pytest.raises(NothingToResolve, match="no automatic resolution"):  # ops path
            await daemon.relay.resolve(msgid, "auto")
    finally:
        await daemon.stop(1)

    daemon = Daemon(config)  # recovery path, still with the changed row
    await daemon.start()
    try:
        assert await _final_or_in_doubt(Gateway(daemon, config, sim), msgid) is RowState.IN_DOUBT
        assert [m.infno for m in sim.ledger.messages].count("2601") == 0
    finally:
        await daemon.stop(1)

    monkeypatch.setitem(TABLE, settlement, shipped)
    daemon = Daemon(config)
    await daemon.start()
    try:
        assert await _final_or_in_doubt(Gateway(daemon, config, sim), msgid) is RowState.REVERSED
        assert [s.state for s in sim.ledger.by_msgid(msgid)] == ["reversed"]
    finally:
        await daemon.stop(1)


_PLAN_WORDS = {
    '"no answer in time": ask again with a new msgid': Plan.ASK_AGAIN,
    "query": Plan.CHECK,
    "冲正": Plan.REVERSE,
    "left in doubt for ops": Plan.OPS,
    "settled by its original's outcome": Plan.BY_ORIGINAL,
}
_ABSENT_WORDS = {"—": None, "send again under the same msgid": IfAbsent.RESEND, "not processed": IfAbsent.NOT_PROCESSED}


def test_the_readme_table_is_the_code_table() -> None:
    """The README's exactly-once table, row by row ("any" standing for both values), is TABLE."""
    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    start = readme.index("| class | 2601 reverses it |")
    lines = readme[start:].split("\n\n")[0].strip().splitlines()[2:]
    described: dict[Kind, Rule] = {}
    for line in lines:
        cls, rev, chk, resend, plan, absent, ordered = (c.strip() for c in line.strip().strip("|").split("|"))
        tx_class = TxClass(cls.split(" ")[0])
        for r, c in itertools.product((False, True), (False, True)):
            if (rev != "any" and (rev == "yes") != r) or (chk != "any" and (chk == "yes") != c):
                continue
            kind = Kind(tx_class, r, c)
            assert kind not in described, f"README describes {kind} twice"
            described[kind] = Rule(resend == "yes", _PLAN_WORDS[plan], _ABSENT_WORDS[absent], ordered == "yes")
    assert described == TABLE
