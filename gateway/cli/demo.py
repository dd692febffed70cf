"""`ybgate demo`: the gateway with the bundled platform simulator, no configuration needed."""

from __future__ import annotations

import argparse
import sys


def run(args: argparse.Namespace) -> int:
    from gateway.app.demo import main_demo

    tcp: tuple[str, int] | None = None
    if args.tcp != "off":
        host, _, port = args.tcp.rpartition(":")
        if not host or not port.isdigit():
            print(f"ybgate demo: --tcp wants HOST:PORT (an IP literal), got {args.tcp!r}", file=sys.stderr)
            return 2
        tcp = (host.strip("[]"), int(port))
    try:
        return main_demo(args.once, sys.stdout, args.log_level, tcp)
    except KeyboardInterrupt:
        return 0
