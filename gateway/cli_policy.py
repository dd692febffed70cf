"""`ybgate policy check|diff|explain|reload` and `ybgate firewall show|apply|verify`."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
from datetime import datetime
from pathlib import Path

from gateway.config import DEFAULT_CONFIG_PATH, Config, load_config
from gateway.errors import ConfigError, GatewayError
from gateway.policy import Caller, LocalTime, Policy, PolicyError, load_policy


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    def config_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", type=Path, default=DEFAULT_CONFIG_PATH, help="config file (default %(default)s)")

    pol = sub.add_parser("policy", help="check, compare and explain the access policy", description="Access policy.")
    psub = pol.add_subparsers(dest="policy_command", metavar="POLICY_COMMAND", required=True)
    check = psub.add_parser(
        "check",
        help="validate policy files (exit 1 with file:line:column of every problem)",
        description="Load and validate policy files or directories, merged in the order given. Without FILE: the "
        "configured policy, also checked against the configured upstreams.",
    )
    check.add_argument("files", type=Path, nargs="*", metavar="FILE")
    config_arg(check)
    diff = psub.add_parser("diff", help="who gains or loses what between two policies")
    diff.add_argument("old", type=Path, help="file or directory")
    diff.add_argument("new", type=Path, help="file or directory")
    explain = psub.add_parser("explain", help="would this client be allowed this transaction, and by which rule")
    explain.add_argument("--client", required=True, help="uid=N, gid=N, an IP address, or a client name")
    explain.add_argument("--infno", required=True)
    explain.add_argument("--upstream", help="HOST:PORT: is it in the upstream whitelist?")
    explain.add_argument("--at", help="local time 'YYYY-MM-DD HH:MM' for maintenance windows (default now)")
    explain.add_argument("--policy", type=Path, action="append", help="policy file/dir (default: configured)")
    config_arg(explain)
    reload = psub.add_parser(
        "reload", help="tell the running daemon to re-read its policy (SIGHUP) and report the result"
    )
    config_arg(reload)

    fw = sub.add_parser("firewall", help="the nftables table rendered from the policy", description="Host firewall.")
    fsub = fw.add_subparsers(dest="firewall_command", metavar="FIREWALL_COMMAND", required=True)
    for name, text in (
        ("show", "print the nft JSON the policy renders (--kernel: what the kernel holds)"),
        ("apply", "apply the rendered table atomically, read it back, roll back on a mismatch"),
        ("verify", "compare the kernel's table with the rendered one (exit 1 on drift)"),
    ):
        p = fsub.add_parser(name, help=text)
        config_arg(p)
        p.add_argument("--interface", help="the 专网 interface (default: policy.firewall.interface)")
        if name == "show":
            p.add_argument("--kernel", action="store_true")


def run(args: argparse.Namespace) -> int:
    try:
        if args.command == "firewall":
            return _firewall(args)
        match args.policy_command:
            case "check":
                return _check(args)
            case "diff":
                return _diff(args.old, args.new)
            case "explain":
                return _explain(args)
            case "reload":
                return _reload(args.config)
    except ConfigError as err:
        for line in err.lines():
            print(line, file=sys.stderr)
        return 1
    except GatewayError as err:
        print(f"ybgate {args.command}: {err.message}", file=sys.stderr)
        return 1
    return 2


def _catalogue() -> list[str]:
    from gateway.platform.catalogue import national

    return sorted(national().entries)


def _summary(policy: Policy) -> list[str]:
    out = [f"  files: {', '.join(policy.files)}", f"  digest: {policy.digest[:16]}"]
    for c in policy.clients:
        ident = [f"uid {u}" for u in sorted(c.uids)] + [f"gid {g}" for g in sorted(c.gids)] + list(c.cidrs)
        deny = f" deny {', '.join(c.deny_entries)}" if c.deny_entries else ""
        out.append(f"  client {c.name} ({', '.join(ident)}): allow {', '.join(c.allow_entries) or '-'}{deny}")
    for host, port in sorted(policy.upstreams):
        out.append(f"  upstream {host}:{port}")
    if policy.callback:
        cb = policy.callback
        out.append(f"  callback {cb.address}:{cb.port} from {', '.join(cb.sources) or 'any'}")
    out += [f"  maintenance {w.name}: {w.message}" for w in policy.windows]
    return out


def _check(args: argparse.Namespace) -> int:
    config: Config | None = None
    paths = list(args.files)
    if not paths:
        config = load_config(args.config)
        paths = list(config.policy.paths)
    try:
        policy = load_policy(paths)
        if config is not None:
            from gateway.daemon import check_upstreams

            check_upstreams(policy, config)
    except PolicyError as err:
        for line in err.lines():
            print(line, file=sys.stderr)
        print(f"policy rejected ({len(err.problems)} problem(s))", file=sys.stderr)
        return 1
    print("policy ok")
    for line in _summary(policy):
        print(line)
    return 0


def _diff(old: Path, new: Path) -> int:
    from gateway.policy.diff import diff

    lines = diff(load_policy([old]), load_policy([new]), _catalogue())
    for line in lines:
        print(line)
    if not lines:
        print("no change in effect")
    return 0


def _caller(text: str, policy: Policy) -> Caller:
    kind, _, value = text.partition("=")
    if kind in ("uid", "gid") and value.isdigit():
        return Caller(uid=int(value)) if kind == "uid" else Caller(gid=int(value))
    by_name = {c.name: c for c in policy.clients}
    if text in by_name:
        c = by_name[text]
        if c.uids:
            return Caller(uid=min(c.uids))
        if c.gids:
            return Caller(gid=min(c.gids))
        return Caller(address=c.cidrs[0].split("/")[0])
    return Caller(address=text)


def _explain(args: argparse.Namespace) -> int:
    paths = args.policy or list(load_config(args.config).policy.paths)
    policy = load_policy(paths)
    when = datetime.strptime(args.at, "%Y-%m-%d %H:%M") if args.at else datetime.now()
    caller = _caller(args.client, policy)
    decision = policy.decide(caller, args.infno, LocalTime.of(when))
    print(("ALLOW " if decision.allowed else "DENY  ") + decision.message(args.infno))
    code = 0 if decision.allowed else 1
    if args.upstream:
        host, _, port = args.upstream.rpartition(":")
        ok = port.isdigit() and policy.upstream_allowed(host.strip("[]"), int(port))
        rule = policy.upstreams.get((host.strip("[]"), int(port))) if port.isdigit() else None
        print(f"{'ALLOW' if ok else 'DENY '} upstream {args.upstream}: " + (str(rule) if rule else "not whitelisted"))
        code = code or (0 if ok else 1)
    return code


def _status(config: Config) -> dict[str, object] | None:
    from gateway.http1.unix_client import request

    if not config.admin.enabled:
        return None
    try:
        reply = asyncio.run(request("GET", "/status", host=config.admin.host, port=config.admin.port, time_limit=5))
    except (OSError, TimeoutError):
        return None
    policy = json.loads(reply.body).get("policy")
    return policy if isinstance(policy, dict) else None


def _reload(config_path: Path) -> int:
    config = load_config(config_path)
    pid_file = config.runtime_dir / "ybgate.pid"
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        print(f"ybgate policy reload: no running daemon ({pid_file} missing or unreadable)", file=sys.stderr)
        return 1
    before = _status(config)
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        print(f"ybgate policy reload: process {pid} from {pid_file} is gone", file=sys.stderr)
        return 1
    if before is None:
        print(f"sent SIGHUP to {pid}; the admin listener does not answer, so the result is only in the log")
        return 0
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        time.sleep(0.2)
        after = _status(config)
        if after is None:
            continue
        counts, was = after.get("reloads") or {}, before.get("reloads") or {}
        assert isinstance(counts, dict) and isinstance(was, dict)
        if counts.get("applied") != was.get("applied"):
            print(f"policy reloaded: digest {str(after.get('digest'))[:16]}")
            return 0
        if counts.get("refused") != was.get("refused"):
            refusal = after.get("last_refusal")
            for line in refusal if isinstance(refusal, list) else [str(refusal)]:
                print(line, file=sys.stderr)
            print("policy reload refused: the policy in force is unchanged", file=sys.stderr)
            return 1
    print("ybgate policy reload: no answer from the daemon within 10 s", file=sys.stderr)
    return 1


def _firewall(args: argparse.Namespace) -> int:
    from gateway.policy.firewall import mismatch, observe
    from gateway.policy.nft import Firewall, Nft

    config = load_config(args.config)
    interface = args.interface or config.policy.firewall.interface
    if not interface:
        print("ybgate firewall: no interface (set policy.firewall.interface or pass --interface)", file=sys.stderr)
        return 1
    nft = Nft()
    fw = Firewall(nft, interface)
    policy = load_policy(config.policy.paths)
    ruleset = fw.render(policy)
    if args.firewall_command == "show":
        if args.kernel:
            print(nft.listing() or "(no ybgate table)")
        else:
            print(json.dumps(ruleset.batch, ensure_ascii=False, indent=1))
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
