"""One day's reconciliation against the platform: 3201 per group; on a mismatch, the detail file up (9101),
3202, the platform's result list down (9102), and the difference list.

The calls are the gateway's own requests through the durable relay, so they are in the outbox and the audit
log like any other, signed in with the gateway's session, and retried by the rules of their class (all safe).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

import structlog

from gateway.errors import GatewayError
from gateway.platform.envelope import RequestEnvelope
from gateway.platform.msgids import MsgidMaker
from gateway.platform.stmtfiles import (
    AMOUNTS,
    GroupKey,
    StatementFileError,
    StatementLine,
    detail_file,
    download_input,
    downloaded_bytes,
    read_result,
    upload_input,
)
from gateway.recon import report as reports
from gateway.recon.compare import HOSPITAL_ONLY, Difference, confirmed_absent, differences
from gateway.recon.local import REFUNDS, LocalDay, read_day
from gateway.relay.answer import RelayAnswer
from gateway.relay.session import Operator

log = structlog.get_logger("gateway.recon")

#: how the gateway's own reconciliation calls appear in the outbox and the audit log
CLIENT = "ybgate:recon"
ON_MISMATCH = "on_mismatch"
ALWAYS = "always"


class Submitter(Protocol):
    async def submit(self, envelope: RequestEnvelope, deadline: float, *, client: str | None = None) -> RelayAnswer: ...


class CallFailed(Exception):
    """A reconciliation call that brought no usable answer: the group is reported incomplete."""


@dataclass(frozen=True)
class ReconSettings:
    #: run 3202 only when 3201 disagrees (the platform's own practice), or for every group
    detail: str = ON_MISMATCH
    #: per platform call
    timeout: float = 120.0
    #: groups to total even on a day without local settlements in them (the platform may hold some)
    extra_groups: tuple[GroupKey, ...] = ()


def totals(lines: list[StatementLine]) -> dict[str, Decimal]:
    return {a: sum((getattr(line, a) for line in lines), Decimal("0.00")) for a in AMOUNTS}


class Reconciler:
    def __init__(
        self,
        outbox: Any,
        relay: Submitter,
        operator: Operator,
        directory: Path,
        settings: ReconSettings | None = None,
        *,
        on_finished: Callable[[reports.Report], None] | None = None,
        msgids: MsgidMaker | None = None,
    ) -> None:
        self.outbox = outbox
        self.relay = relay
        self.operator = operator
        self.directory = directory
        self.settings = settings or ReconSettings()
        self.on_finished = on_finished or (lambda report: None)
        self._msgids = msgids or MsgidMaker()
        self._lock = asyncio.Lock()

    async def run(self, day: date, *, provisional: bool = False) -> reports.Report:
        """Reconcile `day` (platform time) and write its report; one run at a time. A provisional run (the day
        has not closed) is marked so and replaced by the scheduled one."""
        async with self._lock:
            local = await read_day(self.outbox, day)
            report = reports.Report(
                date=day.isoformat(), generated_at=datetime.now().astimezone().isoformat(), provisional=provisional
            )
            report.add_pending(local.unanswered, local.unresolved)
            report.problems = list(local.problems)
            seen: dict[GroupKey, set[str]] = {}  # msgids in the platform's detail, per group whose detail came
            confirmed = {key for key, _ in local.confirmed.values()}
            for key in sorted(set(local.groups) | confirmed | set(self.settings.extra_groups)):
                report.groups.append(await self._group(day, key, local, report, seen))
            absent = _unconfirmed(local, seen)
            for group in report.groups:
                group.differences += sum(1 for d in absent if d.group == group.key)
            report.add_differences(absent)
            report.finish()
            kept = reports.complete_report(self.directory, day) if report.status == reports.INCOMPLETE else None
            if kept is None:
                reports.write(self.directory, day, report)
            else:
                # A failed call must not wipe a complete answer: the finance office keeps working from it.
                report.kept = f"the complete report generated at {kept} is kept"
                log.warning("recon_incomplete_rerun_kept_previous", date=day.isoformat(), previous=kept)
            summary = report.summary()
            log.info("recon_finished", **{k: v for k, v in summary.items() if k != "errors"}, errors=summary["errors"])
            self.on_finished(report)
            return report

    async def _group(
        self, day: date, key: GroupKey, local: LocalDay, report: reports.Report, seen: dict[GroupKey, set[str]]
    ) -> reports.GroupResult:
        lines = local.groups.get(key, [])
        sums = totals(lines)
        result = reports.GroupResult(
            key.insutype, key.clr_type, key.setl_optins, count=len(lines), totals={k: str(v) for k, v in sums.items()}
        )
        stamp = day.isoformat()
        period = {"stmt_begndate": stamp, "stmt_enddate": stamp}
        try:
            out = await self._call(
                "3201",
                {
                    "data": {
                        "insutype": key.insutype,
                        "clr_type": key.clr_type,
                        "setl_optins": key.setl_optins,
                        **period,
                        **{k: str(v) for k, v in sums.items()},
                        "fixmedins_setl_cnt": len(lines),
                    }
                },
            )
            stmt = out.get("stmtinfo") if isinstance(out, dict) else None
            if not isinstance(stmt, dict) or str(stmt.get("stmt_rslt", "")) not in ("0", "1"):
                raise CallFailed("3201 answered without stmtinfo.stmt_rslt")
            result.total_result = str(stmt["stmt_rslt"])
            result.total_description = str(stmt.get("stmt_rslt_dscr") or "")
            # A settlement confirmed without an answer is in neither side's totals when the confirmation is
            # wrong, so 3201 balances: only the detail can show it.
            confirmed = any(k == key for k, _ in local.confirmed.values())
            if result.total_result == "1" or self.settings.detail == ALWAYS or confirmed:
                platform = await self._platform_lines(day, key, lines, sums)
                seen[key] = {line.msgid for line in platform if line.stmt_rslt != HOSPITAL_ONLY}
                found = differences(
                    key,
                    lines,
                    platform,
                    unanswered={p.msgid: p.infno for p in local.unanswered},
                    failed=local.failed,
                )
                result.detail, result.differences = True, len(found)
                report.add_differences(found)
                if result.total_result == "1" and not found:
                    report.problems.append(
                        f"{key.label()}: 3201 says the totals differ, yet the platform's detail matches ours line by "
                        f"line ({result.total_description})"
                    )
        except CallFailed as exc:
            result.error = str(exc)
            log.warning("recon_call_failed", date=stamp, group=key.label(), reason=str(exc))
        return result

    async def _platform_lines(
        self, day: date, key: GroupKey, lines: list[StatementLine], sums: dict[str, Decimal]
    ) -> list[StatementLine]:
        code = self.operator.fixmedins_code
        stem = f"{code}_{day:%Y%m%d}_{key.insutype}_{key.clr_type}_{key.setl_optins}"
        upload = detail_file(f"{stem}.txt", lines)
        folder = self.directory / day.isoformat()
        _keep(folder, f"detail_{stem}.zip", upload)
        up = await self._call("9101", upload_input(f"{stem}.zip", upload, code))
        file_qury_no = (up or {}).get("file_qury_no") if isinstance(up, dict) else None
        if not file_qury_no:
            raise CallFailed("9101 answered without file_qury_no")
        out = await self._call(
            "3202",
            {
                "data": {
                    "setl_optins": key.setl_optins,
                    "clr_type": key.clr_type,
                    "insutype": key.insutype,
                    "file_qury_no": file_qury_no,
                    "stmt_begndate": day.isoformat(),
                    "stmt_enddate": day.isoformat(),
                    "medfee_sumamt": str(sums["medfee_sumamt"]),
                    "fund_pay_sumamt": str(sums["fund_pay_sumamt"]),
                    "cash_payamt": str(sums["medfee_sumamt"] - sums["fund_pay_sumamt"] - sums["acct_pay"]),
                    "fixmedins_setl_cnt": len(lines),
                }
            },
        )
        info = out.get("fileinfo") if isinstance(out, dict) else None
        if not isinstance(info, dict) or not info.get("file_qury_no"):
            raise CallFailed("3202 answered without fileinfo.file_qury_no")
        name = str(info.get("filename") or f"{stem}_result.zip")
        down = await self._call("9102", download_input(str(info["file_qury_no"]), name, code))
        try:
            data = downloaded_bytes(down)
            _keep(folder, f"result_{stem}.zip", data)
            return read_result(data, name)
        except (TypeError, ValueError, StatementFileError) as exc:
            raise CallFailed(f"the platform's result list is unreadable: {exc}") from None

    async def _call(self, infno: str, inp: dict[str, Any]) -> Any:
        now = datetime.now()
        envelope = self.operator.envelope(infno, self._msgids.make(self.operator.fixmedins_code, now), inp, now)
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        try:
            answer = await self.relay.submit(envelope, loop.time() + self.settings.timeout, client=CLIENT)
        except GatewayError as exc:
            raise CallFailed(f"{infno} ({envelope.msgid}): {exc.message}") from None
        log.info("recon_call", infno=infno, msgid=envelope.msgid, infcode=answer.response.infcode,
                 seconds=round(time.perf_counter() - started, 3))  # fmt: skip
        if not answer.response.ok:
            raise CallFailed(f"{infno} refused by the platform: {answer.response.err_msg or 'no err_msg'}")
        return answer.response.output


def _unconfirmed(local: LocalDay, seen: dict[GroupKey, set[str]]) -> list[Difference]:
    """The day's confirmed settlements the platform's detail does not hold, in any group whose detail came
    (a group whose calls failed makes the report incomplete instead)."""
    held = set().union(*seen.values()) if seen else set()
    return [
        confirmed_absent(key, msgid, p.infno, p.psn_no, p.outcome or "confirmed", refund=p.infno in REFUNDS)
        for msgid, (key, p) in sorted(local.confirmed.items())
        if key in seen and msgid not in held
    ]


def _keep(folder: Path, name: str, data: bytes) -> None:
    """The files exchanged with the platform, kept beside the report for the finance office and auditors."""
    folder.mkdir(mode=0o750, parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(data)
    path.chmod(0o640)
