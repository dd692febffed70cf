"""`ybgate firewall show|apply|verify`: the nftables table the policy renders, for ops."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from gateway.config import DEFAULT_CONFIG_PATH, Config, load_config
from gateway.errors import ConfigError, GatewayError


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    fw = sub.add_parser(
        "firewall",
        help="the nftables table (inet ybgate) rendered from the policy",
        description="On the 专网 interface: established traffic, the whitelisted upstreams and the callback "
        "listener pass; everything else is counted and dropped. See policies/README.md.",
    )
    fsub = fw.add_subparsers(dest="firewall_command", metavar="FIREWALL_COMMAND", required=True)
    for name, text in (
        ("show", "print the nft JSON the policy renders (--kernel: what the kernel holds now)"),
        ("apply", "apply the rendered table atomically, read it back, roll back on a mismatch"),
        ("verify", "compare the kernel's table with the rendered one, rule by rule (exit 1 on drift)"),
    ):
        p = fsub.add_parser(name, help=text, description=text)
        p.add_argument("--config", type=Path, default=DEFAULT_CONFIG_PATH, help="config file (default %(default)s)")
        p.add_argument("--interface", help="the 专网 interface (default: policy.firewall.interface)")
        if name == "show":
            p.add_argument("--kernel", action="store_true", help="show the kernel's table instead")


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args, load_config(args.config))
    except ConfigError as err:
        for line in err.lines():
            print(line, file=sys.stderr)
        return 1
    except GatewayError as err:
        print(f"ybgate firewall: {err.message}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace, config: Config) -> int:
    from gateway.policy.firewall import CallbackListen, mismatch, observe
    from gateway.policy.loader import load_policy
    from gateway.policy.nft import Firewall, Nft

    section = config.policy.firewall if config.policy is not None else None
    interface = args.interface or (section.interface if section else None)
    paths = config.policy_paths
    if not interface or paths is None:
        print("ybgate firewall: needs policy.paths and policy.firewall.interface (or --interface)", file=sys.stderr)
        return 1
    callback = CallbackListen(section.callback.address, section.callback.port) if section and section.callback else None
    nft = Nft()
    fw = Firewall(nft, interface, callback)
    policy = load_policy(paths)
    ruleset = fw.render(policy)
    if args.firewall_command == "show":
        print(
            nft.listing() or "(no ybgate table)"
            if args.kernel
            else json.dumps(ruleset.batch, ensure_ascii=False, indent=1)
        )
        return 0
    if args.firewall_command == "apply":
        seen = fw.apply(policy)
        print(f"applied: table inet ybgate on {interface}, {len(seen.skeleton)} rules, verified by read-back")
        return 0
    problem = mismatch(ruleset, observe(nft.listing()))
    if problem:
        print(f"DRIFT: {problem}", file=sys.stderr)
        return 1
    print(f"ok: the kernel's table matches policy {policy.version} ({len(ruleset.skeleton)} rules on {interface})")
    return 0
