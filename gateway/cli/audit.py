"""`ybgate audit verify|export`: check the SM3 chain of the audit log, and hand a period of it to auditors.

ybgate audit verify [FILE…] [--cert FILE] [--anchor FILE]
                                              every link, seq, checkpoint signature and the checkpoint cadence;
                                              with --anchor, the published checkpoint hashes; exit 1 at a break
ybgate audit verify --node NAME=DIR …         a pair: each node's chain as above, then against the shared outbox:
                                              every final outcome in exactly one chain (none missing or doubled)
ybgate audit export --from DATE --to DATE     the entries of a period, with the hashes that tie them to the chain
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from gateway.audit.verify import Cadence
from gateway.config import DEFAULT_CONFIG_PATH, Audit, load_config
from gateway.errors import ConfigError, GatewayError


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "audit",
        help="the SM3-chained audit log: verify, export",
        description="Every final outcome is one entry, chained by SM3; checkpoints are signed with the gateway's "
        "SM2 sign key.",
    )
    asub = p.add_subparsers(dest="audit_command", metavar="AUDIT_COMMAND", required=True)
    verify = asub.add_parser("verify", help="check the chain; name the first altered, removed or reordered entry")
    verify.add_argument("files", nargs="*", type=Path, help="audit files in order (default: the configured directory)")
    verify.add_argument(
        "--cert", type=Path, help="the sign certificate checkpoints are checked with (default: identity)"
    )
    verify.add_argument(
        "--anchor", type=Path, help="published checkpoint hashes (audit.anchor_file, as a collector kept it)"
    )
    verify.add_argument(
        "--checkpoint-every", type=int, help="the cadence checkpoints were written at (default: the config's)"
    )
    verify.add_argument("--checkpoint-interval", type=float, help="seconds (default: the config's)")
    verify.add_argument(
        "--node",
        dest="nodes",
        action="append",
        default=[],
        metavar="NAME=DIR",
        help="a gateway of the pair (relay.outbox.node) and its audit directory; give both: each chain is "
        "verified, then every final row of the configured outbox must be in exactly one of them",
    )
    verify.add_argument(
        "--settle",
        type=float,
        default=5.0,
        help="rows settled this many seconds before the check or later are not judged (default %(default)s)",
    )
    verify.add_argument("--config", type=Path, default=DEFAULT_CONFIG_PATH, help="config file (default %(default)s)")
    export = asub.add_parser("export", help="the entries of a period as JSON lines, with the chain proof")
    export.add_argument("--from", dest="start", required=True, help="YYYY-MM-DD (local time, inclusive)")
    export.add_argument("--to", dest="end", required=True, help="YYYY-MM-DD (local time, inclusive)")
    export.add_argument("--out", type=Path, help="file to write (default: standard output)")
    export.add_argument("--config", type=Path, default=DEFAULT_CONFIG_PATH, help="config file (default %(default)s)")


def run(args: argparse.Namespace) -> int:
    try:
        if args.audit_command == "verify":
            return _verify(args)
        return _export(args)
    except BrokenPipeError:
        raise  # a reader that stopped early: the CLI's entry point ends quietly
    except (ConfigError, OSError, ValueError) as exc:
        print(f"ybgate audit: {exc}", file=sys.stderr)
        return 1
    except GatewayError as exc:  # the outbox a pair's chains are checked against is unavailable
        print(f"ybgate audit: {exc.message}", file=sys.stderr)
        return 1


def _files(args: argparse.Namespace) -> list[Path]:
    from gateway.audit.log import audit_files

    if getattr(args, "files", None):
        return list(args.files)
    directory = load_config(args.config).audit_dir
    files = audit_files(directory)
    if not files:
        raise ValueError(f"no audit files in {directory}")
    return files


def _cadence(args: argparse.Namespace) -> Cadence:
    """The cadence given, else the config's (when there is a config), else the defaults. A checkpoint that
    declares its cadence overrides this for the entries after it."""
    audit = Audit()
    if not args.files or args.config != DEFAULT_CONFIG_PATH or args.config.exists():
        try:
            audit = load_config(args.config).audit
        except ConfigError:
            if not args.files:
                raise
    return Cadence(
        args.checkpoint_every or audit.checkpoint_every, args.checkpoint_interval or audit.checkpoint_interval
    )


def _verify(args: argparse.Namespace) -> int:
    if args.nodes:
        if args.files or args.anchor is not None:
            raise ValueError("--node names each chain by its directory: give no files and no --anchor with it")
        return _verify_pair(args)
    from gateway.audit.anchor import check_anchors
    from gateway.audit.verify import verify
    from gateway.crypto import Certificate

    key = roots = None
    cert_path = args.cert
    if cert_path is None and not args.files:
        identity = load_config(args.config).identity
        if identity is not None:
            # a signer rotation in the log must hand over to a certificate of the identity's CA
            cert_path, roots = identity.sign_cert, Certificate.load_pem_chain(identity.ca_bundle.read_bytes())
    if cert_path is not None:
        key = Certificate.load_pem_chain(cert_path.read_bytes())[0].public_key
    files = _files(args)
    report = verify(files, key, _cadence(args), roots)
    if report.ok and args.anchor is not None:
        report.problem = check_anchors(args.anchor, report.hashes, report.last_seq, report.last_where)
    for note in report.notes:
        print(f"note: {note}")
    if report.torn_tail:
        print(f"note: {report.torn_tail}")
    if not report.ok:
        print(f"BROKEN: {report.problem}", file=sys.stderr)
        return 1
    print(
        f"ok: {report.entries} entries, {report.checkpoints} checkpoints ({report.signed_checkpoints} signature(s) "
        f"checked) in {len(files)} file(s); last hash {report.last_hash}"
        + (f"; published checkpoints match ({args.anchor})" if args.anchor is not None else "")
    )
    return 0


def _nodes(specs: list[str]) -> dict[str, Path]:
    chains: dict[str, Path] = {}
    for spec in specs:
        name, sep, directory = spec.partition("=")
        if not sep or not name or not directory:
            raise ValueError(f"--node {spec!r}: give NAME=DIR (the node's relay.outbox.node and its audit directory)")
        if name in chains:
            raise ValueError(f"--node {name} is given twice")
        if not Path(directory).is_dir():
            raise ValueError(f"--node {name}: no audit directory {directory}")
        chains[name] = Path(directory)
    return chains


def _verify_pair(args: argparse.Namespace) -> int:
    """Each node's chain as `verify` checks one, then the chains against the outbox the config names."""
    import asyncio
    import time

    from gateway.audit.log import audit_files
    from gateway.audit.pair import Settled, cross_check
    from gateway.audit.verify import verify
    from gateway.crypto import Certificate
    from gateway.relay import inspect, pg_inspect

    chains = _nodes(args.nodes)
    config = load_config(args.config)
    key = None
    cert_path = args.cert or (config.identity.sign_cert if config.identity is not None else None)
    if cert_path is not None:
        key = Certificate.load_pem_chain(cert_path.read_bytes())[0].public_key
    broken = False
    for name, directory in chains.items():
        files = audit_files(directory)
        report = verify(files, key, _cadence(args), None) if files else None
        if report is None:
            print(f"node {name}: no audit files in {directory}")
        elif report.ok:
            print(f"node {name}: chain ok, {report.entries} entries in {len(files)} file(s)")
        else:
            print(f"BROKEN: node {name}: {report.problem}", file=sys.stderr)
            broken = True
    dsn_file = config.relay.outbox.dsn_file if config.relay.outbox.backend == "postgresql" else None
    now = time.time()
    if dsn_file is not None:
        rows = asyncio.run(pg_inspect.settled(dsn_file))
    else:
        rows = inspect.settled(config.state_dir / "outbox.db")
    pair = cross_check(chains, (Settled(*r) for r in rows), until=now - args.settle)
    for (msgid, state), places in sorted(pair.doubled.items())[:20]:
        print(f"DOUBLED: {msgid} {state} audited {len(places)} times: {', '.join(places)}", file=sys.stderr)
    for row in pair.missing[:20]:
        print(
            f"MISSING: {row.msgid} {row.state} settled by {row.node or 'this gateway'} is in no chain", file=sys.stderr
        )
    figures = ", ".join(f"node {n} {c} outcomes" for n, c in pair.outcomes.items())
    print(
        f"{figures}; {pair.compared} final rows of the outbox compared: {len(pair.missing)} missing, "
        f"{len(pair.doubled)} doubled ({pair.not_compared} not judged: settled before their node's chain begins, "
        f"in the last {args.settle:g} s, or by no node given)"
    )
    return 0 if pair.ok and not broken else 1


def _export(args: argparse.Namespace) -> int:
    start = datetime.strptime(args.start, "%Y-%m-%d").timestamp()
    end = datetime.strptime(args.end, "%Y-%m-%d").timestamp() + 86400
    out = args.out.open("w", encoding="utf-8") if args.out else sys.stdout
    count = 0
    before = None
    after = None
    try:
        for path in _files(args):
            for raw in path.read_bytes().splitlines():
                try:
                    entry = json.loads(raw)
                except ValueError:
                    continue
                ts = float(entry.get("ts", 0))
                if ts < start:
                    before = entry["hash"]
                    continue
                if ts >= end:
                    if after is None and entry.get("kind") == "checkpoint":
                        after = entry
                    continue
                out.write(json.dumps(entry, ensure_ascii=False, sort_keys=True) + "\n")
                count += 1
        proof = {"kind": "export", "from": args.start, "to": args.end, "entries": count, "hash_before": before}
        if after is not None:
            proof["checkpoint_after"] = after
        out.write(json.dumps(proof, ensure_ascii=False, sort_keys=True) + "\n")
    finally:
        if args.out:
            out.close()
    print(f"exported {count} entries", file=sys.stderr)
    return 0
