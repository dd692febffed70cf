"""`ybgate policy …` and `ybgate firewall …`: the access policy and the nftables table it renders.

ybgate policy check [PATH…]                      validate (exit 1 with file:line:column for every problem)
ybgate policy explain --client C --infno N       which rule allows or denies, and why
ybgate policy diff OLD NEW                       who gains or loses what
ybgate policy reload                             make the running daemon load it (refused if bad)
ybgate firewall show|apply|verify                the table on the 专网 interface
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from gateway.config import DEFAULT_CONFIG_PATH, load_config
from gateway.errors import ConfigError


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "policy",
        help="the access policy: check, explain, diff, reload",
        description="Which local clients may call which transactions, which upstreams may be reached. "
        "PATHs are policy files or directories (a directory: its *.yaml in name order); without PATHs, the "
        "paths the configuration names.",
    )
    psub = p.add_subparsers(dest="policy_command", metavar="POLICY_COMMAND", required=True)
    check = psub.add_parser("check", help="validate policy files (exit 1 with positions)")
    check.add_argument("paths", nargs="*", type=Path)
    check.add_argument("--config", type=Path, default=DEFAULT_CONFIG_PATH, help="config file (default %(default)s)")
    explain = psub.add_parser("explain", help="would this client be allowed this transaction, and by which rule")
    explain.add_argument("paths", nargs="*", type=Path)
    explain.add_argument("--client", required=True, help="uid=N[,gid=M] or gid=M (Unix socket) or ip=ADDR (TCP)")
    explain.add_argument("--infno", required=True)
    explain.add_argument("--upstream", help="HOST:PORT: also say whether it may be reached")
    explain.add_argument("--at", help="local time YYYY-MM-DD HH:MM (maintenance windows; default now)")
    explain.add_argument("--config", type=Path, default=DEFAULT_CONFIG_PATH, help="config file (default %(default)s)")
    diff = psub.add_parser("diff", help="who gains or loses what between two policies")
    diff.add_argument("old", type=Path)
    diff.add_argument("new", type=Path)
    reload = psub.add_parser("reload", help="make the running daemon load the policy (a bad one is refused)")
    reload.add_argument("--config", type=Path, default=DEFAULT_CONFIG_PATH, help="config file (default %(default)s)")


def add_firewall_parser(sub: Any) -> None:
    fw = sub.add_parser(
        "firewall",
        help="the nftables table rendered from the policy: show, apply, verify",
        description="Our own table (inet ybgate) on the 专网 interface: established traffic, the whitelisted "
        "upstreams and the callback listener pass; the rest is counted and dropped.",
    )
    fsub = fw.add_subparsers(dest="firewall_command", metavar="FIREWALL_COMMAND", required=True)
    for name, text in (
        ("show", "print the table the policy renders, as nft text (--json: nft JSON; --kernel: what the kernel holds)"),
        ("apply", "apply the rendered table atomically, read it back, roll back on a mismatch"),
        ("verify", "compare the kernel's table with the rendered one (exit 1 on drift)"),
    ):
        p = fsub.add_parser(name, help=text)
        p.add_argument("--config", type=Path, default=DEFAULT_CONFIG_PATH, help="config file (default %(default)s)")
        p.add_argument("--interface", help="the 专网 interface (default: policy.firewall.interface)")
        p.add_argument("--netns", help="act inside this network namespace (tests; a gateway in its own netns)")
        if name == "show":
            p.add_argument("--kernel", action="store_true", help="the table the kernel holds now, not the rendered one")
            p.add_argument("--json", action="store_true", help="nft's JSON form (for tools) instead of its text form")


def run(args: argparse.Namespace) -> int:
    from gateway.policy.firewall import FirewallError
    from gateway.policy.loader import PolicyError

    try:
        if args.command == "firewall":
            return _firewall(args)
        if args.policy_command == "check":
            return _check(args)
        if args.policy_command == "explain":
            return _explain(args)
        if args.policy_command == "diff":
            return _diff(args)
        return _reload(args)
    except PolicyError as err:
        for line in err.lines():
            print(line, file=sys.stderr)
        return 1
    except (ConfigError, ValueError) as err:
        print(f"ybgate {args.command}: {err}", file=sys.stderr)
        return 1
    except FirewallError as err:
        print(f"ybgate firewall: {err.message}", file=sys.stderr)
        return 1


def _paths(args: argparse.Namespace) -> list[Path]:
    if args.paths:
        return list(args.paths)
    paths = load_config(args.config).policy_paths
    if paths is None:
        raise ValueError(f"{args.config} names no policy (development mode): give the policy PATHs")
    return paths


def _check(args: argparse.Namespace) -> int:
    from gateway.policy.loader import load_policy

    policy = load_policy(_paths(args))
    print(
        f"policy {policy.version}: {len(policy.files)} file(s), {len(policy.clients)} client(s), "
        f"{len(policy.upstreams)} upstream(s), {len(policy.rates)} rate limit(s), {len(policy.windows)} window(s)"
    )
    for c in policy.clients:
        print(f"  client {c.name}: {c.describe_match()} -> {', '.join(c.allow_words)}")
    for host, port in sorted(policy.upstreams):
        print(f"  upstream {host}:{port}")
    return 0


def _caller(text: str) -> Any:
    from gateway.policy.engine import Caller

    fields: dict[str, str] = {}
    for part in text.split(","):
        key, _, value = part.partition("=")
        if key.strip() not in ("uid", "gid", "ip") or not value:
            raise ValueError(f"--client: {part!r}: use uid=N, gid=N or ip=ADDR")
        fields[key.strip()] = value.strip()
    return Caller(
        uid=int(fields["uid"]) if "uid" in fields else None,
        gid=int(fields["gid"]) if "gid" in fields else None,
        ip=fields.get("ip"),
    )


def _explain(args: argparse.Namespace) -> int:
    from gateway.policy.engine import decide, upstream_allowed
    from gateway.policy.loader import load_policy

    policy = load_policy(_paths(args))
    at = datetime.strptime(args.at, "%Y-%m-%d %H:%M") if args.at else datetime.now()
    decision = decide(policy, _caller(args.client), args.infno, at.weekday(), at.hour * 60 + at.minute)
    print(f"{'ALLOW' if decision.allowed else 'DENY'} {args.infno} for {args.client}: {decision.reason}")
    ok = decision.allowed
    if args.upstream:
        host, _, port = args.upstream.rpartition(":")
        reachable = upstream_allowed(policy, host.strip("[]"), int(port))
        why = "whitelisted" if reachable else "not in the upstream whitelist"
        print(f"{'ALLOW' if reachable else 'DENY'} upstream {args.upstream}: {why}")
        ok = ok and reachable
    return 0 if ok else 1


def _diff(args: argparse.Namespace) -> int:
    from gateway.policy.diff import policy_diff
    from gateway.policy.loader import load_policy

    lines = policy_diff(load_policy([args.old]), load_policy([args.new]))
    for line in lines:
        print(line)
    if not lines:
        print("no change in what is allowed")
    return 0


def _reload(args: argparse.Namespace) -> int:
    from gateway.http1.unix_client import request

    config = load_config(args.config)
    try:
        reply = asyncio.run(
            request("POST", "/policy/reload", b"", unix_socket=str(config.control_socket), time_limit=30)
        )
    except (OSError, TimeoutError) as exc:
        print(f"ybgate policy reload: the daemon is not answering on {config.control_socket} ({exc})", file=sys.stderr)
        return 1
    doc = json.loads(reply.body)
    if doc.get("result") == "applied":
        print(f"policy {doc.get('version')} in force")
        return 0
    print("policy refused; the policy in force stays:", file=sys.stderr)
    for line in doc.get("problems", [doc.get("error", "")]):
        print(f"  {line}", file=sys.stderr)
    return 1


def _firewall(args: argparse.Namespace) -> int:
    from gateway.policy.firewall import mismatch, observe
    from gateway.policy.loader import load_policy
    from gateway.policy.nft import Firewall, Nft, as_text

    config = load_config(args.config)
    fw_settings = config.policy.firewall if config.policy is not None else None
    interface = args.interface or (fw_settings.interface if fw_settings else None)
    if not interface:
        print("ybgate firewall: no interface (set policy.firewall.interface or pass --interface)", file=sys.stderr)
        return 1
    paths = config.policy_paths
    if paths is None:
        print("ybgate firewall: the configuration names no policy", file=sys.stderr)
        return 1
    nft = Nft(args.netns)
    fw = Firewall(nft, interface)
    policy = load_policy(paths)
    ruleset = fw.render(policy)
    if args.firewall_command == "show":
        if args.kernel:
            print(nft.listing(text=not args.json) or "(no ybgate table)")
        elif args.json:
            print(json.dumps(ruleset.batch, ensure_ascii=False, indent=1))
        else:
            print(as_text(ruleset.text()), end="")
        return 0
    if args.firewall_command == "apply":
        seen = fw.apply(policy)
        print(f"applied: table inet ybgate on {interface}, {len(seen.skeleton)} rules, verified by read-back")
        return 0
    problem = mismatch(ruleset, observe(nft.listing()))
    if problem:
        print(f"DRIFT: {problem}", file=sys.stderr)
        return 1
    print(f"ok: the kernel's table matches the policy ({len(ruleset.skeleton)} rules on {interface})")
    return 0
