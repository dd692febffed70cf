"""Reconciliation's parts on their own: the statement files, the outbox's view of a day, the comparison and the
daily schedule's arithmetic (the live suite runs them together against the simulator)."""

from __future__ import annotations

import io
import json
import zipfile
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from gateway.config import load_config_text
from gateway.errors import ConfigError
from gateway.platform.catalogue import TxClass
from gateway.platform.stmtfiles import (
    GroupKey,
    StatementFileError,
    StatementLine,
    detail_file,
    downloaded_bytes,
    file_answer,
    money,
    read_detail,
    read_result,
    result_file,
    zipped,
)
from gateway.recon.compare import differences
from gateway.recon.local import local_day
from gateway.recon.schedule import ReconSchedule
from gateway.relay.outbox import Row
from gateway.relay.states import RowState

BJ = timezone(timedelta(hours=8))
KEY = GroupKey("310", "11", "440300")


def line(setl_id: str, medfee: str, **kw: Any) -> StatementLine:
    m = Decimal(medfee)
    return StatementLine(setl_id, "M1", "P1", m, (m * Decimal("0.6")).quantize(Decimal("0.01")), Decimal("0.00"), **kw)


def test_files_round_trip_and_name_the_bad_line() -> None:
    lines = [line("S1", "128.50"), line("S2", "-66.00", refd_setl_flag="1")]
    assert read_detail(detail_file("d.txt", lines)) == lines
    with_verdict = [line("S1", "1.10", msgid="X" * 30, setl_time="2026-11-24 08:00:00", stmt_rslt="0", memo="一致")]
    assert read_result(result_file("r.txt", with_verdict)) == with_verdict

    bad = zipped("d.txt", "S1\tM1\tP1\t1.00\t0.60\t0.00\t0\nS2\tM1\tP1\tabc\t0.60\t0.00\t0\n")
    with pytest.raises(StatementFileError, match=r"d\.txt:2: not an amount: 'abc'"):
        read_detail(bad)
    with pytest.raises(StatementFileError, match=r"d\.txt:1: 3 fields, expected 7"):
        read_detail(zipped("d.txt", "S1\tM1\tP1\n"))
    with pytest.raises(StatementFileError, match="not a zip file"):
        read_detail(b"PK not really")
    with pytest.raises(StatementFileError, match="tab or a line break"):
        detail_file("d.txt", [line("S\t1", "1.00")])
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("a.txt", "")
        zf.writestr("b.txt", "")
    with pytest.raises(StatementFileError, match=r"expected one \.txt file in the zip, found 2"):
        read_detail(buf.getvalue())


def test_money_is_decimal_cents() -> None:
    assert money(0.1) + money(0.2) == Decimal("0.30")  # floats summed would not be
    assert money("66") == Decimal("66.00") and money(-1.005) == Decimal("-1.00")
    with pytest.raises(ValueError, match="not an amount"):
        money("12,50")


def test_a_downloaded_file_travels_as_an_envelope() -> None:
    answer = file_answer(b"PK\x03\x04zip bytes", "r.zip")
    assert answer.ok and answer.output["filename"] == "r.zip"
    assert downloaded_bytes(json.loads(answer.body)["output"]) == b"PK\x03\x04zip bytes"


def row(msgid: str, infno: str, state: RowState, created: float, response: dict[str, Any] | None = None) -> Row:
    request = {"infno": infno, "insuplc_admdvs": "440300", "input": {"data": {"insutype": "310", "mdtrt_id": "M9"}}}
    return Row(
        msgid=msgid,
        infno=infno,
        tx_class=TxClass.MONEY_MOVING,
        psn_no="P1",
        state=state,
        attempts=1,
        created=created,
        updated=created + 0.1,
        deadline=None,
        upstream="sim",
        body_digest=b"",
        request=json.dumps(request).encode(),
        response=json.dumps(response).encode() if response is not None else None,
        outcome=None,
    )


def answered(setl_id: str, medfee: float, setl_time: str | None = None, **info: Any) -> dict[str, Any]:
    setl: dict[str, Any] = {"setl_id": setl_id, "medfee_sumamt": medfee, "fund_pay_sumamt": 1, "acct_pay": 0}
    if setl_time:
        setl["setl_time"] = setl_time
    return {"infcode": "0", "output": {"setlinfo": setl | info}}


def test_the_outbox_view_of_a_day() -> None:
    day = date(2026, 11, 24)
    noon = datetime(2026, 11, 24, 12, tzinfo=BJ).timestamp()
    late = datetime(2026, 11, 24, 23, 59, 59, tzinfo=BJ).timestamp()
    rows = [
        row("A", "2207", RowState.ANSWERED, noon, answered("S1", 10.5)),
        row("B", "2208", RowState.ANSWERED, noon, answered("S2", -10.5, clr_type="11", clr_optins="440300")),
        # accepted before midnight, settled after it: the next day's
        row("C", "2207", RowState.ANSWERED, late, answered("S3", 3, setl_time="2026-11-25 00:00:01")),
        row("D", "2207", RowState.ANSWERED, noon, {"infcode": -1, "err_msg": "余额不足", "output": None}),
        row("E", "2207", RowState.CONFIRMED, noon),
        row("F", "2207", RowState.IN_DOUBT, noon),
        row("G", "2207", RowState.REVERSED, noon),
        row("H", "2207", RowState.ANSWERED, noon, {"infcode": 0, "output": {"setlinfo": {"setl_id": "S8"}}}),
        row("I", "1101", RowState.ANSWERED, noon, {"infcode": 0, "output": {}}),
        row("J", "2304", RowState.ANSWERED, noon, answered("S9", 1000, insutype="390")),
    ]
    view = local_day(day, rows)
    assert sorted(view.groups) == [KEY, GroupKey("390", "21", "440300")]
    assert [(x.setl_id, x.refd_setl_flag, str(x.medfee_sumamt)) for x in view.groups[KEY]] == [
        ("S1", "0", "10.50"),
        ("S2", "1", "-10.50"),
    ]
    assert view.groups[KEY][0].setl_time.startswith("2026-11-24 12:00:00")  # from the answer's arrival
    assert [p.msgid for p in view.unanswered] == ["E"] and [p.msgid for p in view.unresolved] == ["F"]
    assert view.problems == ["H (2207): the answer's setlinfo lacks medfee_sumamt, fund_pay_sumamt, acct_pay"]
    assert [x.setl_id for x in local_day(date(2026, 11, 25), rows).groups[KEY]] == ["S3"]


def test_comparison_explains_a_platform_line_booked_without_answer() -> None:
    ours = [line("S1", "10.00", msgid="A")]
    theirs = [line("S1", "10.00", stmt_rslt="0"), line("S7", "5.00", msgid="E", stmt_rslt="2")]
    found = differences(KEY, ours, theirs, unanswered={"E": "2207"})
    assert [(d.kind, d.setl_id) for d in found] == [("platform_only", "S7")]
    assert "outbox msgid E was confirmed as booked" in found[0].note and found[0].platform_verdict == "医院无此记录"
    # the platform flags a line whose amounts agree: listed for a look, not as money
    flagged = differences(KEY, ours, [line("S1", "10.00", stmt_rslt="1")])
    assert [(d.kind, d.fields) for d in flagged] == [("platform_verdict", [])]


def test_schedule_arithmetic(tmp_path: Path) -> None:
    s = ReconSchedule(None, tmp_path, cutoff="02:30", lag_days=1)  # type: ignore[arg-type]
    before = datetime(2026, 11, 24, 2, 29, tzinfo=BJ).timestamp()
    after = datetime(2026, 11, 24, 2, 30, tzinfo=BJ).timestamp()
    assert s.target(before) == date(2026, 11, 22) and s.target(after) == date(2026, 11, 23)
    assert s.until_next(before) == 60.0 and s.until_next(after) == 86400.0
    assert s.due(after) == date(2026, 11, 23)  # no report yet
    (tmp_path / "2026-11-23.json").write_text(json.dumps({"status": "differences"}))
    assert s.due(after) is None  # reported (differences are for people to chase, not for a rerun)
    (tmp_path / "2026-11-23.json").write_text(json.dumps({"status": "incomplete"}))
    assert s.due(after) == date(2026, 11, 23)
    s.attempts[date(2026, 11, 23)] = s.max_attempts
    assert s.due(after) is None  # bounded retries


def test_recon_needs_the_gateways_own_sign_in() -> None:
    text = (
        "development: true\nrecon: {enabled: true}\nupstreams: [{name: s, host: 127.0.0.1, port: 1, transport: tcp}]\n"
    )
    with pytest.raises(ConfigError, match=r"recon\.enabled needs session with sign_in: true"):
        load_config_text(text, "t.yaml")
    with pytest.raises(ConfigError, match="cutoff"):
        load_config_text(text.replace("{enabled: true}", "{cutoff: '25:00'}"), "t.yaml")
