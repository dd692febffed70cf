"""The `ybgate` command: one front door for ops, the demo and the simulator."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from gateway import __version__
from gateway.cli import audit as cli_audit
from gateway.cli import backup as cli_backup
from gateway.cli import bench as cli_bench
from gateway.cli import certs as cli_certs
from gateway.cli import check as cli_check
from gateway.cli import demo as cli_demo
from gateway.cli import outbox as cli_outbox
from gateway.cli import policy as cli_policy
from gateway.cli import probe as cli_probe
from gateway.cli import profiles as cli_profiles
from gateway.cli import recon as cli_recon
from gateway.cli import run as cli_run
from gateway.cli import sim as cli_sim
from gateway.cli import status as cli_status
from gateway.config import DEFAULT_CONFIG_PATH


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad argument is one line naming the command and where to look (argparse's usage block
    buries the error under a screen of options; subcommand parsers inherit this class)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="ybgate", description="Gateway for the hospital side of the 医保专网.")
    p.add_argument("--version", action="version", version=f"ybgate {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = sub.add_parser(
        "run",
        help="run the gateway daemon",
        description="Run the gateway daemon in the foreground (systemd runs it this way).",
    )
    run.add_argument("--config", type=Path, default=DEFAULT_CONFIG_PATH, help="config file (default %(default)s)")

    check = sub.add_parser(
        "check",
        help="validate the configuration and show what it would do",
        description="Load and validate everything, print what the daemon would do; "
        "exit 0 when valid, 1 otherwise (like nginx -t).",
    )
    check.add_argument("--config", type=Path, default=DEFAULT_CONFIG_PATH, help="config file (default %(default)s)")

    demo = sub.add_parser(
        "demo",
        help="gateway + bundled platform simulator, no config needed",
        description="Start the platform simulator and a gateway relaying to it on a "
        "throwaway state directory, and print how to call it.",
    )
    demo.add_argument(
        "--once",
        action="store_true",
        help="run a scripted cashier session, check the simulator ledger, exit 0 only if all is well",
    )
    demo.add_argument(
        "--tcp",
        default="127.0.0.1:8097",
        metavar="HOST:PORT",
        help="also listen on TCP for LAN HIS workstations (default %(default)s, where the bureau's sample front "
        "service listens; port 0: any free port; 'off': the Unix socket only)",
    )
    demo.add_argument("--log-level", default="error", choices=["debug", "info", "warning", "error"])

    status = sub.add_parser(
        "status",
        help="show the running gateway's state (from its admin listener)",
        description="Ask the running daemon's admin listener for its status: upstreams, link, in-flight requests, "
        "recent errors. Exit 1 when it does not answer.",
    )
    status.add_argument("--config", type=Path, default=DEFAULT_CONFIG_PATH, help="config file (default %(default)s)")
    status.add_argument("--json", action="store_true", help="print the raw status document")

    cli_certs.add_parser(sub)

    probe = sub.add_parser(
        "probe",
        help="one TLCP handshake to HOST:PORT, reported plainly",
        description="Handshake with a TLCP endpoint (the platform, or any GmSSL/Tongsuo server) and print the "
        "negotiated suite, the peer's sign/enc certificates and their expiry, the handshake time, or the alert "
        "that ended it. With --config, uses the configured identity and CA.",
    )
    probe.add_argument("target", help="HOST:PORT")
    probe.add_argument(
        "--config",
        type=Path,
        default=None,
        help="take --ca, the client identity and (for an upstream at HOST:PORT) its tlcp settings from this config",
    )
    probe.add_argument("--ca", type=Path, help="CA bundle to verify the peer with (without it: shown, not verified)")
    probe.add_argument("--sign-cert", type=Path)
    probe.add_argument("--sign-key", type=Path)
    probe.add_argument("--enc-cert", type=Path)
    probe.add_argument("--enc-key", type=Path)
    probe.add_argument(
        "--suite", action="append", default=[], help="offer only this suite (repeatable), e.g. ECC_SM4_GCM_SM3"
    )
    probe.add_argument("--server-name", help="send this SNI")
    probe.add_argument("--request", type=Path, help="after the handshake, POST this envelope file and show the answer")

    cli_outbox.add_parser(sub)

    cli_profiles.add_parser(sub)
    cli_policy.add_parser(sub)
    cli_policy.add_firewall_parser(sub)
    cli_audit.add_parser(sub)
    cli_backup.add_parsers(sub)
    cli_recon.add_parser(sub)
    cli_bench.add_parser(sub)
    sim = sub.add_parser(
        "sim",
        help="run the platform simulator",
        description="Run the national-interface simulator with its admin endpoint "
        "(GET /_sim/ledger, POST /_sim/faults).",
    )
    sim.add_argument("--host", default="127.0.0.1", help="listen address (default %(default)s)")
    sim.add_argument("--port", type=int, default=9443, help="platform port (default %(default)s)")
    sim.add_argument("--admin-port", type=int, default=9480, help="admin port (default %(default)s)")
    sim.add_argument(
        "--pki",
        type=Path,
        default=None,
        help="serve TLCP with the server certificates of this test PKI (ybgate certs gen-test-pki); "
        "client certificates from its CA required",
    )
    sim.add_argument(
        "--journal",
        type=Path,
        default=None,
        help="keep the ledger in this file (every message fsync'd before it is answered, replayed at start), "
        "so a simulator killed and started again holds what it booked",
    )
    return p


COMMANDS: dict[str, Any] = {
    "check": lambda a: cli_check.cmd_check(a.config),
    "run": lambda a: cli_run.cmd_run(a.config),
    "demo": cli_demo.run,
    "certs": cli_certs.run,
    "outbox": cli_outbox.cmd_outbox,
    "probe": cli_probe.cmd_probe,
    "status": lambda a: cli_status.cmd_status(a.config, a.json),
    "sim": lambda a: cli_sim.cmd_sim(a.host, a.port, a.admin_port, a.pki, journal=a.journal),
    "profile": cli_profiles.run,
    "policy": cli_policy.run,
    "firewall": cli_policy.run,
    "audit": cli_audit.run,
    "backup": cli_backup.run,
    "restore": cli_backup.run,
    "recon": cli_recon.run,
    "bench": cli_bench.run,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    command = COMMANDS.get(args.command)
    try:
        code = int(command(args)) if command is not None else 2
        sys.stdout.flush()  # a pipe closed early shows here, not in the interpreter's own flush at exit
    except BrokenPipeError:
        # `ybgate outbox list | head`: the reader has what it wanted. Send what is left to /dev/null so the
        # interpreter's final flush stays quiet, and exit as `head` readers expect from a writer (SIGPIPE's 141).
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    return code
