"""`ybgate outbox list|show|resolve`: the durable outbox, read directly; resolution through the daemon."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from gateway.cli.config_file import read_config
from gateway.config import DEFAULT_CONFIG_PATH, Config
from gateway.errors import GatewayError


def add_parser(sub: Any) -> None:
    outbox = sub.add_parser(
        "outbox",
        help="inspect the durable outbox; resolve in-doubt requests",
        description="Requests the gateway has accepted, their states and outcomes.",
    )
    outbox_sub = outbox.add_subparsers(dest="outbox_command", metavar="OUTBOX_COMMAND", required=True)
    olist = outbox_sub.add_parser("list", help="recent requests, newest first")
    olist.add_argument("--config", type=Path, default=DEFAULT_CONFIG_PATH, help="config file (default %(default)s)")
    olist.add_argument("--state", choices=[s.value for s in _states()], help="only requests in this state")
    olist.add_argument("--limit", type=int, default=50)
    oshow = outbox_sub.add_parser("show", help="one request with its stored request and answer (as JSON)")
    oshow.add_argument("msgid")
    oshow.add_argument("--config", type=Path, default=DEFAULT_CONFIG_PATH, help="config file (default %(default)s)")
    ores = outbox_sub.add_parser(
        "resolve",
        help="resolve an in-doubt request (through the running daemon)",
        description="Without options: resolve by the class rules now (a reversible settlement is reversed by "
        "冲正 2601). After checking with the platform, --booked or --not-booked with --reason states the "
        "outcome (kept in the outbox). Exit 0 when the request is final afterwards.",
    )
    ores.add_argument("msgid")
    decided = ores.add_mutually_exclusive_group()
    decided.add_argument("--booked", action="store_true", help="the platform shows it booked: the HIS must not resend")
    decided.add_argument(
        "--not-booked", action="store_true", help="the platform shows nothing: the HIS may retry with a new msgid"
    )
    ores.add_argument("--reason", default="", help="what the platform showed (required with --booked/--not-booked)")
    ores.add_argument("--config", type=Path, default=DEFAULT_CONFIG_PATH, help="config file (default %(default)s)")

    omig = outbox_sub.add_parser(
        "migrate",
        help="move this host's SQLite outbox into the PostgreSQL database relay.outbox.dsn_file names",
        description="Every row, in every state, in one transaction; the SQLite file is only read. Run it with the "
        "daemon stopped, then set relay.outbox.backend: postgresql. Run again, it moves nothing twice.",
    )
    omig.add_argument("--to", choices=["postgresql"], required=True)
    omig.add_argument("--config", type=Path, default=DEFAULT_CONFIG_PATH, help="config file (default %(default)s)")


def _states() -> list[Any]:
    from gateway.relay.states import RowState

    return list(RowState)


def _outbox_resolve(config: Config, args: argparse.Namespace) -> int:
    """Through the daemon's control socket: the daemon owns the outbox and the tunnel (a second writer on
    the database, or a 冲正 sent around the daemon, would race the relay)."""
    import json

    from gateway.http1.unix_client import request

    action = "booked" if args.booked else "not_booked" if args.not_booked else "auto"
    body = json.dumps({"msgid": args.msgid, "action": action, "reason": args.reason}, ensure_ascii=False).encode()
    try:
        reply = asyncio.run(
            request("POST", "/outbox/resolve", body, unix_socket=str(config.control_socket), time_limit=60)
        )
    except (OSError, TimeoutError) as exc:
        print(
            f"ybgate outbox resolve: the daemon is not answering on {config.control_socket} ({exc}); "
            "on its next start it resolves every in-doubt request by its class rules",
            file=sys.stderr,
        )
        return 1
    doc = json.loads(reply.body)
    if reply.status != 200:
        print(f"ybgate outbox resolve: {doc.get('error')}", file=sys.stderr)
        return 1
    print(f"{doc['msgid']} ({doc['infno']}): {doc['state']} — {doc['outcome']}")
    return 0 if doc["state"] in ("answered", "reversed", "failed", "confirmed") else 1


def _outbox_migrate(config: Config) -> int:
    from gateway.cli.running import daemon_answers
    from gateway.relay.pg_migrate import migrate

    source, dsn_file = config.state_dir / "outbox.db", config.relay.outbox.dsn_file
    if dsn_file is None:
        print("ybgate outbox migrate: relay.outbox.dsn_file names no database to move the outbox into", file=sys.stderr)
        return 1
    if daemon_answers(config.control_socket):
        print(f"ybgate outbox migrate: the daemon is running ({config.control_socket}): stop it first", file=sys.stderr)
        return 1
    try:
        moved, already = asyncio.run(migrate(source, dsn_file))
    except GatewayError as exc:
        print(f"ybgate outbox migrate: {exc.message}", file=sys.stderr)
        return 1
    for state in sorted(set(moved) | set(already)):
        print(f"{state:<10} moved {moved[state]:>7}   already there {already[state]:>7}")
    print(f"{sum(moved.values())} rows moved from {source} (left as it was) into the database of {dsn_file}")
    if config.relay.outbox.backend != "postgresql":
        print("next: set relay.outbox.backend: postgresql in the configuration, then start the daemon")
    return 0


def _read(db: Path, dsn_file: Path | None, args: argparse.Namespace) -> tuple[list[dict[str, Any]], Any]:
    """The rows `list` prints, or the row `show` prints, from the local file or the shared database."""
    from gateway.relay import inspect, pg_inspect

    listing = args.outbox_command == "list"
    if dsn_file is not None:
        if listing:
            return asyncio.run(pg_inspect.list_rows(dsn_file, state=args.state, limit=args.limit)), None
        return [], asyncio.run(pg_inspect.show(dsn_file, args.msgid))
    if listing:
        return inspect.list_rows(db, state=args.state, limit=args.limit), None
    return [], inspect.show(db, args.msgid)


def cmd_outbox(args: argparse.Namespace) -> int:
    import json
    import sqlite3

    from gateway.logging import mask_value
    from gateway.relay import inspect

    config = read_config(args.config)
    if config is None:
        return 1
    if args.outbox_command == "resolve":
        return _outbox_resolve(config, args)
    if args.outbox_command == "migrate":
        return _outbox_migrate(config)
    store = config.relay.outbox
    db = config.state_dir / "outbox.db"
    where = str(store.dsn_file if store.backend == "postgresql" else db)
    try:
        rows, doc = _read(db, store.dsn_file if store.backend == "postgresql" else None, args)
        if args.outbox_command == "list":
            for row in rows:
                print(inspect.line(row))
            return 0
    except BrokenPipeError:
        raise  # the reader stopped early: main() ends quietly
    except (OSError, ValueError, sqlite3.Error) as exc:
        print(f"ybgate outbox: {where}: {exc}", file=sys.stderr)
        return 1
    except GatewayError as exc:  # the database is away or refuses the login: said without the DSN
        print(f"ybgate outbox: {exc.message}", file=sys.stderr)
        return 1
    if doc is None:
        print(f"ybgate outbox: no request with msgid {args.msgid}", file=sys.stderr)
        return 1
    # Patient data is masked here as in logs: this output ends up in tickets and chat.
    print(json.dumps(mask_value(None, doc), ensure_ascii=False, indent=1))
    # on stderr: stdout stays one JSON document for tools
    access = config.logging.access
    if access.to == "journal":
        print(f"what its HIS was answered: journalctl -t ybgate-access -g {args.msgid}", file=sys.stderr)
    elif access.to == "file":
        print(f"what its HIS was answered: grep {args.msgid} {access.path}*", file=sys.stderr)
    return 0
