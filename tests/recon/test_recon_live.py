"""Daily reconciliation against the simulator, end to end: settlements through the gateway, the day's
3201/9101/3202/9102 calls through the same relay, and the difference list in CSV and JSON — exactly the
differences injected into the platform's view, and none on a clean day. `ybgate recon` runs as a real process
against the running daemon's control socket."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest_asyncio

from gateway.app.daemon import Daemon
from gateway.app.demo import demo_config
from gateway.config import Recon, ReconGroup
from gateway.http1.unix_client import request
from gateway.recon.schedule import ReconSchedule
from gateway.sim.server import Simulator

from conftest import Gateway, fresh, gateway_operator, ybgate_output

OPERATOR = gateway_operator()


async def start(sim: Simulator, state: Path, **recon: Any) -> Gateway:
    assert sim.addresses is not None
    config = demo_config(state, sim.addresses.platform).model_copy(
        update={"session": OPERATOR, "recon": Recon(enabled=True, **recon)}
    )
    daemon = Daemon(config)
    await daemon.start()
    return Gateway(daemon, config, sim)


@pytest_asyncio.fixture
async def recon(sim: Simulator, short_tmp: Path) -> AsyncIterator[Gateway]:
    gw = await start(sim, short_tmp)
    yield gw
    await gw.daemon.stop(1)


async def settle(gw: Gateway, amount: str, insutype: str = "310", psn: str = "44000000000000000012") -> dict[str, Any]:
    doc = fresh("2207_settle_request.json", sign_no="")
    doc["input"]["data"] |= {"medfee_sumamt": amount, "insutype": insutype, "psn_no": psn}
    body = json.loads((await gw.post(doc)).body)
    assert str(body["infcode"]) == "0", body
    return body["output"]["setlinfo"] | {"msgid": doc["msgid"]}


async def cancel(gw: Gateway, setl: dict[str, Any]) -> dict[str, Any]:
    doc = fresh("2207_settle_request.json", infno="2208", sign_no="")
    doc["input"] = {"data": {"setl_id": setl["setl_id"], "psn_no": setl["psn_no"], "mdtrt_id": setl["mdtrt_id"]}}
    body = json.loads((await gw.post(doc)).body)
    assert str(body["infcode"]) == "0", body
    return body["output"]["setlinfo"]


async def a_day(gw: Gateway) -> tuple[list[dict[str, Any]], date]:
    """Six settlements in two insurance types, one of them cancelled (a refund line)."""
    setls = [await settle(gw, a) for a in ("128.50", "66.00", "10.01", "300.00")]
    setls += [await settle(gw, a, insutype="390", psn="44000000000000000034") for a in ("45.50", "88.88")]
    await cancel(gw, setls[1])
    return setls, date.fromisoformat(setls[0]["setl_time"][:10])


async def run(gw: Gateway, day: date) -> tuple[int, dict[str, Any]]:
    reply = await request(
        "POST",
        "/recon/run",
        json.dumps({"date": day.isoformat()}).encode(),
        unix_socket=str(gw.config.control_socket),
        time_limit=60,
    )
    return reply.status, json.loads(reply.body)


def report_of(summary: dict[str, Any]) -> dict[str, Any]:
    return json.loads(Path(summary["report"]).read_text())


def files_of(summary: dict[str, Any]) -> tuple[bytes, bytes]:
    return Path(summary["report"]).read_bytes(), Path(summary["differences_csv"]).read_bytes()


def csv_of(summary: dict[str, Any]) -> str:
    return Path(summary["differences_csv"]).read_text(encoding="utf-8-sig")


def mode_of(path: str) -> int:
    return Path(path).stat().st_mode & 0o777


def kept_files(gw: Gateway, day: date) -> list[str]:
    return sorted(p.name.split("_")[0] for p in (gw.config.recon_dir / day.isoformat()).iterdir())


def calls(gw: Gateway, infno: str) -> int:
    return sum(1 for m in gw.sim.ledger.messages if m.infno == infno)


def cli_config(gw: Gateway, directory: Path) -> Path:
    cfg = directory / "ops.yaml"
    cfg.write_text(
        f"development: true\nstate_dir: {gw.config.state_dir}\nruntime_dir: {gw.config.runtime_dir}\n"
        "upstreams: [{name: s, host: 127.0.0.1, port: 1, transport: tcp}]\n"
    )
    return cfg


async def test_a_clean_day_balances_with_3201_alone(recon: Gateway, short_tmp: Path) -> None:
    _, day = await a_day(recon)
    status, summary = await run(recon, day)
    assert status == 200, summary
    assert summary["status"] == "balanced" and summary["differences"] == 0
    assert summary["groups"] == 2 and summary["settlements"] == 7  # six settlements and one refund line
    assert calls(recon, "3201") == 2 and calls(recon, "3202") == 0 and calls(recon, "9101") == 0

    doc = report_of(summary)
    assert [g["total_result"] for g in doc["groups"]] == ["0", "0"]
    first = next(g for g in doc["groups"] if g["insutype"] == "310")
    # 128.50 + 66.00 - 66.00 + 10.01 + 300.00, in Decimal: no binary-float cents
    assert first["count"] == 5 and first["totals"]["medfee_sumamt"] == "438.51"
    rows = list(csv.reader(io.StringIO(csv_of(summary))))
    assert rows[0][:3] == ["kind", "setl_id", "msgid"] and len(rows) == 1
    assert mode_of(summary["report"]) == 0o640

    code, out, _ = await ybgate_output(
        "recon", "report", "--date", day.isoformat(), "--config", str(cli_config(recon, short_tmp))
    )
    assert code == 0 and f"{day.isoformat()}: balanced" in out and "310/11/440300: 5 settlement(s)" in out
    assert b'ybgate_recon_runs_total{result="balanced"} 1.0' in recon.daemon.metrics.render()


async def test_a_day_with_injected_differences_yields_exactly_those(recon: Gateway, short_tmp: Path) -> None:
    setls, day = await a_day(recon)
    lost, altered = setls[0]["setl_id"], setls[4]["setl_id"]
    reply = await request(
        "POST",
        "/_sim/recon",
        json.dumps(
            {
                "lose": [lost],
                "alter": {altered: {"fund_pay_sumamt": "1.00"}},
                "phantom": [{"psn_no": "44000000000000000077", "medfee_sumamt": "50.00", "insutype": "310"}],
            }
        ).encode(),
        host=recon.sim.addresses.admin[0],  # type: ignore[union-attr]
        port=recon.sim.addresses.admin[1],  # type: ignore[union-attr]
    )
    assert reply.status == 200, reply.body
    phantom = json.loads(reply.body)["made"][0]

    status, summary = await run(recon, day)
    assert status == 200 and summary["status"] == "differences" and summary["differences"] == 3, summary
    assert calls(recon, "9101") == 2 and calls(recon, "3202") == 2 and calls(recon, "9102") == 2

    doc = report_of(summary)
    found = {(d["kind"], d["setl_id"]) for d in doc["differences"]}
    assert found == {("local_only", lost), ("amount_differs", altered), ("platform_only", phantom)}
    changed = next(d for d in doc["differences"] if d["kind"] == "amount_differs")
    assert changed["fields"] == ["fund_pay_sumamt"] and changed["platform"]["fund_pay_sumamt"] == "1.00"
    assert changed["platform_verdict"] == "金额不一致" and changed["msgid"] == setls[4]["msgid"]
    assert next(d for d in doc["differences"] if d["kind"] == "platform_only")["psn_no"] == "44000000000000000077"

    rows = list(csv.DictReader(io.StringIO(csv_of(summary))))
    assert {(r["kind"], r["setl_id"]) for r in rows} == found
    local_only = next(r for r in rows if r["kind"] == "local_only")
    assert local_only["local_medfee_sumamt"] == "128.50" and local_only["platform_medfee_sumamt"] == ""
    # The files exchanged with the platform are kept beside the report.
    assert kept_files(recon, day) == ["detail", "detail", "result", "result"]

    code, out, _ = await ybgate_output(
        "recon", "report", "--date", day.isoformat(), "--config", str(cli_config(recon, short_tmp))
    )
    assert code == 1 and "differences" in out and lost in out and phantom in out
    assert b"ybgate_recon_differences 3.0" in recon.daemon.metrics.render()


async def test_detail_always_finds_nothing_on_a_clean_day(sim: Simulator, short_tmp: Path) -> None:
    gw = await start(sim, short_tmp, detail="always")
    try:
        _, day = await a_day(gw)
        status, summary = await run(gw, day)
        assert status == 200 and summary["status"] == "balanced" and summary["differences"] == 0, summary
        assert calls(gw, "3202") == 2 and calls(gw, "9102") == 2
    finally:
        await gw.daemon.stop(1)


async def test_a_group_without_local_settlements_is_checked_when_configured(sim: Simulator, short_tmp: Path) -> None:
    group = ReconGroup(insutype="390", clr_type="11", setl_optins="440300")
    gw = await start(sim, short_tmp, extra_groups=[group])
    try:
        setl = await settle(gw, "20.00")
        day = date.fromisoformat(setl["setl_time"][:10])
        phantom = sim.platform.statements.phantom({"insutype": "390", "medfee_sumamt": "9.90"})
        _, summary = await run(gw, day)
        assert summary["status"] == "differences" and summary["differences"] == 1, summary
        doc = report_of(summary)
        assert doc["differences"][0]["setl_id"] == phantom.setl_id and doc["differences"][0]["kind"] == "platform_only"
    finally:
        await gw.daemon.stop(1)


async def test_a_failed_platform_call_makes_the_report_incomplete_and_says_which(recon: Gateway) -> None:
    _, day = await a_day(recon)
    recon.sim.faults.set("3201", {"kind": "http502"})
    status, summary = await run(recon, day)
    assert status == 200 and summary["status"] == "incomplete", summary
    assert len(summary["errors"]) == 2 and all("3201" in e for e in summary["errors"])
    # The daily schedule takes an incomplete day up again (a complete one it leaves alone).
    assert recon.daemon.recon is not None
    schedule = ReconSchedule(recon.daemon.recon, recon.config.recon_dir, cutoff="00:00", lag_days=0)
    noon = datetime(day.year, day.month, day.day, 12, tzinfo=timezone(timedelta(hours=8))).timestamp()
    assert schedule.due(noon) == day
    # The day before, reconciled (no settlements, nothing incomplete): left alone. Run by this schedule here, not
    # left to the daemon's, which closes a day only at its 02:00 cutoff (platform time): a report it made before
    # then is provisional, and a provisional day is due again.
    recon.sim.faults.clear("3201")
    before = await schedule.run_now(day - timedelta(days=1))
    assert before.status == "no_settlements" and not before.provisional, before
    assert schedule.due(noon - 86400) is None


async def test_cli_run_through_the_daemon_and_refusals(recon: Gateway, short_tmp: Path) -> None:
    setl = await settle(recon, "12.34")
    day = setl["setl_time"][:10]
    cfg = str(cli_config(recon, short_tmp))
    code, out, err = await ybgate_output("recon", "run", "--date", day, "--config", cfg)
    assert code == 0, err
    assert f"{day}: balanced — 1 settlement(s) in 1 group(s), 0 difference(s)" in out
    code, _, err = await ybgate_output("recon", "run", "--date", "2026-13-01", "--config", cfg)
    assert code == 2 and "not a date" in err
    code, _, err = await ybgate_output("recon", "report", "--date", "2020-01-01", "--config", cfg)
    assert code == 1 and "no report for 2020-01-01" in err


async def in_doubt_then_booked_by_ops(gw: Gateway, cfg: Path, amount: str, psn: str) -> dict[str, Any]:
    """A settlement the platform never got (the connection closed after it was sent), which ops declare
    booked while its 冲正's "nothing found" is not yet believed."""
    gw.sim.faults.set("2207", {"kind": "drop_before", "times": 1})
    doc = fresh("2207_settle_request.json", sign_no="")
    doc["input"]["data"] |= {"medfee_sumamt": amount, "insutype": "310", "psn_no": psn}
    body = json.loads((await gw.post(doc)).body)
    assert body.get("gateway_error") == "outcome_unknown", body
    code, out, err = await ybgate_output(
        "outbox", "resolve", str(doc["msgid"]), "--booked", "--reason", "seen in the platform's portal",
        "--config", str(cfg),
    )  # fmt: skip
    assert code == 0 and "confirmed" in out, (out, err)
    return doc


async def test_a_wrong_ops_confirmation_is_among_the_differences(recon: Gateway, short_tmp: Path) -> None:
    cfg = cli_config(recon, short_tmp)
    setls, day = await a_day(recon)
    # The platform never got either; their 冲正 find nothing, which is believed only after reversal_settle: ops
    # declare both booked before then. The platform then holds one of them (booked by another path: the
    # simulator's phantom with that msgid), so that confirmation is right and the other is wrong.
    wrong = await in_doubt_then_booked_by_ops(recon, cfg, "55.50", "44000000000000000056")
    held = await in_doubt_then_booked_by_ops(recon, cfg, "77.70", "44000000000000000078")
    assert not {wrong["msgid"], held["msgid"]} & {s.msgid for s in recon.sim.ledger.settlements}

    lost, altered = setls[0]["setl_id"], setls[4]["setl_id"]
    reply = await request(
        "POST",
        "/_sim/recon",
        json.dumps(
            {
                "lose": [lost],
                "alter": {altered: {"medfee_sumamt": "88.89"}},
                "phantom": [{"msgid": held["msgid"], "medfee_sumamt": "77.70", "insutype": "310"}],
            }
        ).encode(),
        host=recon.sim.addresses.admin[0],  # type: ignore[union-attr]
        port=recon.sim.addresses.admin[1],  # type: ignore[union-attr]
    )
    assert reply.status == 200, reply.body
    [platform_setl] = json.loads(reply.body)["made"]

    status, summary = await run(recon, day)
    assert status == 200 and summary["status"] == "differences", summary
    doc = report_of(summary)
    found = {(d["kind"], d["setl_id"], d["msgid"]) for d in doc["differences"]}
    assert found == {
        ("local_only", lost, setls[0]["msgid"]),
        ("amount_differs", altered, setls[4]["msgid"]),
        ("platform_only", platform_setl, held["msgid"]),  # explained: confirmed, and the platform has it
        ("confirmed_absent", "", wrong["msgid"]),  # ops were wrong: the HIS was told it is booked
    }, found
    absent = next(d for d in doc["differences"] if d["kind"] == "confirmed_absent")
    assert "resolved by ops as booked" in absent["note"] and absent["insutype"] == "310"
    explained = next(d for d in doc["differences"] if d["kind"] == "platform_only")
    assert "was confirmed as booked" in explained["note"]
    assert {p["msgid"] for p in doc["unanswered"]} == {held["msgid"], wrong["msgid"]}

    # The totals, computed here from what the HIS was answered: the settlements of 310 less the refunded one
    # (the answer's amounts are JSON numbers: read as their decimal text)
    amounts = [Decimal(str(s["medfee_sumamt"])) for s in setls if s["insutype"] == "310"]
    ours = sum(amounts, Decimal("0.00")) - Decimal(str(setls[1]["medfee_sumamt"]))
    group = next(g for g in doc["groups"] if g["insutype"] == "310")
    assert Decimal(group["totals"]["medfee_sumamt"]) == ours and group["count"] == 5
    assert group["detail"] and group["differences"] == 3  # lost, the explained one, the wrong confirmation
    rows = list(csv.DictReader(io.StringIO(csv_of(summary))))
    assert {(r["kind"], r["msgid"]) for r in rows} == {(k, m) for k, _, m in found}


async def test_a_day_run_before_it_closed_is_provisional_and_the_schedule_replaces_it(recon: Gateway) -> None:
    setl = await settle(recon, "42.00")
    today = date.fromisoformat(setl["setl_time"][:10])  # not closed: cutoff 02:00 and lag_days 1
    status, summary = await run(recon, today)
    assert status == 200 and summary["status"] == "balanced" and summary["provisional"] is True, summary
    assert report_of(summary)["provisional"] is True
    # Once the day has closed, the scheduled run takes it up (before, the manual report counted as done).
    after = datetime(today.year, today.month, today.day, 2, 1, tzinfo=timezone(timedelta(hours=8))) + timedelta(days=1)
    assert recon.daemon.recon_schedule.due(after.timestamp()) == today
    # A day that has not begun is refused outright.
    status, refusal = await run(recon, today + timedelta(days=1))
    assert status == 409 and "has not begun" in refusal["error"], refusal


async def test_an_incomplete_rerun_keeps_the_complete_report(recon: Gateway, short_tmp: Path) -> None:
    setls, day = await a_day(recon)
    recon.sim.platform.statements.lose(setls[0]["setl_id"])
    _, first = await run(recon, day)
    assert first["status"] == "differences" and first["differences"] == 1, first
    complete = files_of(first)
    recon.sim.faults.set("3201", {"kind": "http502"})
    status, second = await run(recon, day)
    assert status == 200 and second["status"] == "incomplete" and second["errors"], second
    assert "the complete report generated at" in second["kept"]
    assert files_of(second) == complete
    code, out, _ = await ybgate_output(
        "recon", "run", "--date", day.isoformat(), "--config", str(cli_config(recon, short_tmp))
    )
    assert code == 1 and "not written: the complete report generated at" in out


async def test_the_cli_default_day_is_the_daemon_s(short_tmp: Path) -> None:
    """`ybgate recon report` without --date asks for the day the schedule would reconcile (cutoff, lag_days)."""
    cfg = short_tmp / "c.yaml"
    cfg.write_text(
        f"development: true\nstate_dir: {short_tmp}\n"
        "upstreams: [{name: s, host: 127.0.0.1, port: 1, transport: tcp}]\n"
        "session: {sign_in: true, opter: '0099', opter_name: x, fixmedins_code: H44030000001, "
        "fixmedins_name: x, mdtrtarea_admvs: '440300', mac: 52-54-00-00-00-99, ip: 10.0.0.99}\n"
        "recon: {enabled: true, cutoff: '00:00', lag_days: 3}\n"
    )
    bj = timezone(timedelta(hours=8))
    before = datetime.now(bj).date()
    code, _, err = await ybgate_output("recon", "report", "--config", str(cfg))
    after = datetime.now(bj).date()
    # with a 00:00 cutoff every day has closed at its end: three days before today (yesterday was the old default)
    expected = {(d - timedelta(days=3)).isoformat() for d in (before, after)}
    assert code == 1 and any(f"no report for {e}" in err for e in expected), err
