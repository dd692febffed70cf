"""`ybgate recon run|report`: the daily reconciliation (对账) with the platform.

ybgate recon run [--date D]       reconcile a day now, through the running daemon (it owns the tunnel)
ybgate recon report [--date D]    show a day's report: totals per group and the difference list
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

from gateway.config import DEFAULT_CONFIG_PATH, Config, load_config
from gateway.errors import ConfigError


def _closed_day(config: Config) -> str:
    """The day the daemon's schedule reconciles now (its cutoff and lag_days): one rule for both."""
    from gateway.recon.schedule import closed_day

    return closed_day(time.time(), config.recon.cutoff, config.recon.lag_days).isoformat()


def _day(text: str) -> str:
    try:
        return date.fromisoformat(text).isoformat()
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date: {text!r} (YYYY-MM-DD)") from None


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "recon",
        help="daily reconciliation with the platform: run, report",
        description="3201 totals per insurance type / clearing type / agency; on a mismatch the detail goes up "
        "(9101 + 3202) and the platform's result list comes back (9102); the difference list is written "
        "as CSV and JSON under state_dir/recon.",
    )
    rsub = p.add_subparsers(dest="recon_command", metavar="RECON_COMMAND", required=True)
    run = rsub.add_parser("run", help="reconcile a day now (through the running daemon)")
    report = rsub.add_parser("report", help="show a day's report")
    for q in (run, report):
        q.add_argument(
            "--date",
            type=_day,
            default=None,
            help="YYYY-MM-DD, platform time (default: the latest day closed by recon.cutoff and lag_days)",
        )
        q.add_argument("--config", type=Path, default=DEFAULT_CONFIG_PATH, help="config file (default %(default)s)")
    report.add_argument("--json", action="store_true", help="the whole report as JSON")
    report.add_argument("--csv", action="store_true", help="the difference list as CSV")


def run(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"ybgate recon: {exc}", file=sys.stderr)
        return 1
    day = args.date or _closed_day(config)
    if args.recon_command == "run":
        return _run(config, day)
    return _report(config, day, args)


def _run(config: Config, day: str) -> int:
    from gateway.http1.unix_client import request

    body = json.dumps({"date": day}).encode()
    try:
        reply = asyncio.run(request("POST", "/recon/run", body, unix_socket=str(config.control_socket), time_limit=900))
    except (OSError, TimeoutError) as exc:
        print(f"ybgate recon run: the daemon is not answering on {config.control_socket} ({exc})", file=sys.stderr)
        return 1
    doc = json.loads(reply.body)
    if reply.status != 200:
        print(f"ybgate recon run: {doc.get('error')}", file=sys.stderr)
        return 1
    _print_summary(doc)
    print(f"report: {doc['report']}\ndifference list: {doc['differences_csv']}")
    return 0 if doc["status"] in ("balanced", "no_settlements") else 1


def _print_summary(doc: dict[str, Any]) -> None:
    print(
        f"{doc['date']}: {doc['status']} — {doc['settlements']} settlement(s) in {doc['groups']} group(s), "
        f"{doc['differences']} difference(s), {doc['unanswered']} booked without answer, "
        f"{doc['unresolved']} unresolved"
    )
    for err in doc.get("errors") or []:
        print(f"  incomplete: {err}")
    if doc.get("kept"):
        print(f"  not written: {doc['kept']}")
    if doc.get("provisional"):
        print("  provisional: the day has not closed (recon.cutoff, lag_days); the scheduled run will replace it")


def _report(config: Config, day: str, args: argparse.Namespace) -> int:
    from gateway.recon import report as reports

    when = date.fromisoformat(day)
    try:
        doc = reports.read(config.recon_dir, when)
    except (OSError, TypeError, ValueError) as exc:
        print(f"ybgate recon report: {exc}", file=sys.stderr)
        return 1
    if doc is None:
        print(f"ybgate recon report: no report for {day} in {config.recon_dir}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(doc, ensure_ascii=False, indent=1))
    elif args.csv:
        sys.stdout.write(reports.paths(config.recon_dir, when)[1].read_text(encoding="utf-8-sig"))
    else:
        _print_report(doc)
    return 0 if doc["status"] in ("balanced", "no_settlements") else 1


def _print_report(doc: dict[str, Any]) -> None:
    provisional = " PROVISIONAL (the day had not closed)" if doc.get("provisional") else ""
    print(f"{doc['date']}: {doc['status']}{provisional} (generated {doc['generated_at']})")
    for g in doc["groups"]:
        verdict = {"0": "balanced", "1": "totals differ"}.get(g["total_result"], "not reconciled")
        line = (
            f"  {g['insutype']}/{g['clr_type']}/{g['setl_optins']}: {g['count']} settlement(s), "
            f"medfee {g['totals']['medfee_sumamt']}, fund {g['totals']['fund_pay_sumamt']}, "
            f"account {g['totals']['acct_pay']} — 3201 {verdict}"
        )
        if g["detail"]:
            line += f"; 3202: {g['differences']} difference(s)"
        if g["error"]:
            line += f"; ERROR {g['error']}"
        print(line)
    for d in doc["differences"]:
        local = d["local"] or {}
        platform = d["platform"] or {}
        print(
            f"  {d['kind']:<16} setl_id {d['setl_id']} msgid {d['msgid'] or '-'} "
            f"medfee local {local.get('medfee_sumamt', '-')} platform {platform.get('medfee_sumamt', '-')}"
            f" — {d['note']}"
        )
    for p in doc["unanswered"]:
        print(f"  booked without answer: {p['msgid']} ({p['infno']})")
    for p in doc["unresolved"]:
        print(f"  unresolved at reconciliation time: {p['msgid']} ({p['infno']}, {p['state']})")
    for problem in doc["problems"]:
        print(f"  unreadable answer: {problem}")
