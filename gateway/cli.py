"""The `ybgate` command: one front door for ops, the demo and the simulator."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from gateway import __version__, cli_audit, cli_backup, cli_bench, cli_check, cli_policy, cli_profiles, cli_recon
from gateway.cli_sim import cmd_sim
from gateway.config import DEFAULT_CONFIG_PATH, Config, load_config
from gateway.errors import ConfigError, GatewayError


def _add_outbox(sub: Any) -> None:
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


def _add_certs(sub: Any) -> None:
    certs = sub.add_parser(
        "certs", help="check SM2 certificates and keys; make a test PKI", description="SM2 certificate tools."
    )
    certs_sub = certs.add_subparsers(dest="certs_command", metavar="CERTS_COMMAND", required=True)
    ccheck = certs_sub.add_parser(
        "check",
        help="check the configured sign/enc certificates, keys and CA",
        description="Chain to the CA bundle, key usage per role (sign vs enc), key/cert match, days to expiry, key "
        "file permissions. One line per finding; exit 1 on any error.",
    )
    ccheck.add_argument("--config", type=Path, default=DEFAULT_CONFIG_PATH, help="config file (default %(default)s)")
    gen = certs_sub.add_parser(
        "gen-test-pki",
        help="write a throwaway test PKI (NOT for production)",
        description="Root CA, server sign+enc and client sign+enc certificates and keys (0600) for tests and the "
        "demo. Marked 'NOT FOR PRODUCTION' in every subject.",
    )
    gen.add_argument("directory", type=Path)
    gen.add_argument("--name", action="append", default=None, help="server DNS name (repeatable; default localhost)")
    gen.add_argument(
        "--keep-ca-key", action="store_true", help="also write ca.key.pem (0600) so `certs issue` can renew"
    )
    gen.add_argument("--force", action="store_true", help="replace the certificates and keys already there")
    reissue = certs_sub.add_parser(
        "issue",
        help="issue the next certificates from a kept test CA (NOT for production)",
        description="New keys and sign+enc certificates for the server or client role of a test PKI made with "
        "gen-test-pki --keep-ca-key, replacing that role's files in place: a certificate rotation drill.",
    )
    reissue.add_argument("directory", type=Path)
    reissue.add_argument("--role", choices=("client", "server"), default="client")
    reissue.add_argument("--name", action="append", default=None, help="server DNS name (repeatable)")


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

    _add_certs(sub)

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

    _add_outbox(sub)

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


def _states() -> list[Any]:
    from gateway.relay.states import State

    return list(State)


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


def cmd_outbox(args: argparse.Namespace) -> int:
    import json
    import sqlite3

    from gateway.logging import mask_value
    from gateway.relay import inspect

    config = _load(args.config)
    if config is None:
        return 1
    if args.outbox_command == "resolve":
        return _outbox_resolve(config, args)
    db = config.state_dir / "outbox.db"
    try:
        if args.outbox_command == "list":
            for row in inspect.list_rows(db, state=args.state, limit=args.limit):
                print(inspect.line(row))
            return 0
        doc = inspect.show(db, args.msgid)
    except BrokenPipeError:
        raise  # the reader stopped early: main() ends quietly
    except (OSError, ValueError, sqlite3.Error) as exc:
        print(f"ybgate outbox: {db}: {exc}", file=sys.stderr)
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


def _load(path: Path) -> Config | None:
    try:
        return load_config(path)
    except ConfigError as err:
        for line in err.lines():
            print(line, file=sys.stderr)
        print(f"{path}: configuration rejected ({len(err.problems)} problem(s))", file=sys.stderr)
        return None


def cmd_check(path: Path) -> int:
    """Like nginx -t: the plan, every problem, then one verdict line."""
    config = _load(path)
    if config is None:
        return 1
    print(f"{path}: plan")
    print(
        f"  HIS API: unix socket {config.api_socket} (mode {config.api.socket_mode:04o}"
        f"{', group ' + config.api.socket_group if config.api.socket_group else ''})"
    )
    for t in config.api.tcp:
        print(f"  HIS API: tcp {t.host}:{t.port}")
    print(f"  platform paths: {', '.join(config.api.paths)}")
    for u in config.upstreams:
        print(f"  upstream {u.name} ({u.role}): {u.transport} {u.host}:{u.port}{cli_profiles.path_of(u)}")
    print(f"  state: {config.state_dir}   runtime: {config.runtime_dir}")
    admin = f"http://{config.admin.host}:{config.admin.port}/ (status page, /metrics)"
    print(f"  admin: {admin if config.admin.enabled else 'off'}")
    if config.mqtt.enabled:
        print(f"  mqtt: {config.mqtt.host}:{config.mqtt.port} topics {config.mqtt.topic_prefix}/(status|health|events)")
    if config.health.interface:
        print(f"  watching 专网 interface {config.health.interface}")
    if config.development:
        print("  WARNING: development mode (plain TCP upstreams allowed); never on a production 前置机")
    notes: list[str] = []
    problems = cli_check.problems(config, notes)
    for line in notes:
        print(f"  {line}")
    for line in problems:
        print(line, file=sys.stderr)
    if problems:
        print(f"{path}: configuration rejected ({len(problems)} problem(s))", file=sys.stderr)
        return 1
    print(f"{path}: configuration ok")
    return 0


def cmd_run(path: Path) -> int:
    # structlog imports rich whenever it is installed (a development tool pulls it in) for pretty tracebacks
    # the daemon never prints (its logs are JSON lines): 11 MiB of resident memory for nothing.
    sys.modules.setdefault("rich", None)  # type: ignore[arg-type]
    from gateway.daemon import Daemon
    from gateway.health.systemd import Notifier, listen_fds
    from gateway.logging import configure

    config = _load(path)
    if config is None:
        return cli_check.EXIT_CONFIG
    problems = cli_check.problems(config)
    if problems:
        for line in problems:
            print(line, file=sys.stderr)
        print(f"ybgate: not starting: {path}: {len(problems)} problem(s) (see ybgate check)", file=sys.stderr)
        return cli_check.EXIT_CONFIG
    configure(config.logging.level, config.logging.format)
    # Socket activation: systemd holds the API socket across restarts, so no HIS connection is refused.
    fds = listen_fds()
    api_socket = fds.get("api") or next(iter(fds.values()), None)

    async def main() -> None:
        await Daemon(config, api_socket=api_socket, notifier=Notifier(), config_path=path).run()

    try:
        asyncio.run(main())
    except GatewayError as err:
        # A refusal to start (key file too open, identity invalid, socket in use): one clear line, exit 1.
        print(f"ybgate: not starting: {err.message}", file=sys.stderr)
        return 1
    except OSError as err:
        if err.filename is None:
            raise
        # A file that vanished or changed between the checks and its use: one line, as for a setting.
        print(f"ybgate: not starting: {err.filename}: {err.strerror}", file=sys.stderr)
        return cli_check.EXIT_CONFIG
    return 0


def cmd_status(path: Path, as_json: bool) -> int:
    import json

    from gateway.http1.unix_client import request

    config = _load(path)
    if config is None:
        return 1
    if not config.admin.enabled:
        print("the admin listener is disabled in the configuration (admin.enabled: false)", file=sys.stderr)
        return 1
    host, port = config.admin.host, config.admin.port
    try:
        reply = asyncio.run(request("GET", "/status", host=host, port=port, time_limit=5))
    except (OSError, TimeoutError) as exc:
        print(f"ybgate is not answering on {host}:{port}: {exc}", file=sys.stderr)
        return 1
    doc = json.loads(reply.body)
    if as_json:
        print(json.dumps(doc, ensure_ascii=False, indent=1))
        return 0
    recent = doc["recent"]
    print(
        f"ybgate {doc['version']}  up {doc['uptime_s']:.0f}s  in flight {doc['in_flight']}  "
        f"answered {recent['answered']}  refused {recent.get('refused', 0)}  failed {recent['failed']}"
    )
    if recent.get("by_kind"):
        print("  by kind: " + ", ".join(f"{kind} {n}" for kind, n in recent["by_kind"].items()))
    link = doc.get("link")
    print(f"link: {link['interface']} {'up' if link['up'] else 'DOWN'}" if link else "link: not watched")
    for u in doc["upstreams"]:
        print(f"upstream {u['name']} ({u['role']}): {u['transport']} {u['address']}")
    for e in recent["errors"][:10]:
        what = "refused" if e.get("refused") else "failed"
        again = f" (x{e['repeats']})" if e.get("repeats", 1) > 1 else ""
        who = f" [{e['client']}]" if e.get("client") else ""
        print(f"{what}{who} {e['kind']}: {e['infno'] or '-'} {e['msgid'] or '-'}{again} {e['message']}")
    return 0


def cmd_certs_check(path: Path) -> int:
    from gateway.secretfile import SecretFileError

    config = _load(path)
    if config is None:
        return 1
    if config.identity is None:
        print(f"{path}: no identity section (sign/enc certificates and keys) to check", file=sys.stderr)
        return 1
    try:
        findings = cli_check.identity_findings(config)
    except SecretFileError as err:
        print(f"ERROR   {err.message}")
        return 1
    for f in findings:
        print(f)
    return 1 if any(f.severity == "error" for f in findings) else 0


def cmd_gen_test_pki(directory: Path, names: list[str] | None, keep_ca_key: bool = False, force: bool = False) -> int:
    from gateway.crypto.testpki import generate_test_pki

    # A test PKI a gateway or simulator is configured with must not be replaced by accident: its peers would
    # stop trusting each other with nothing saying why.
    present = sorted(p.name for p in directory.glob("*.pem")) if directory.is_dir() else []
    if present and not force:
        print(
            f"ybgate certs gen-test-pki: {directory} already holds {', '.join(present)}; --force replaces them",
            file=sys.stderr,
        )
        return 1
    try:
        files = generate_test_pki(directory, server_names=tuple(names or ["localhost"]), write_ca_key=keep_ca_key)
    except OSError as exc:
        print(f"ybgate certs gen-test-pki: cannot write to {directory}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    _print_files(f"test PKI (NOT FOR PRODUCTION) written to {directory}:", files)
    return 0


def cmd_certs_issue(directory: Path, role: str, names: list[str] | None) -> int:
    from gateway.crypto.testpki import KeptCAError, issue_next

    try:
        files = issue_next(directory, role, server_names=tuple(names or ["localhost"]))
    except (KeptCAError, OSError) as e:
        print(f"ybgate certs issue: {e}", file=sys.stderr)
        return 1
    _print_files(
        f"new {role} certificates (NOT FOR PRODUCTION) in {directory}; apply with systemctl reload ybgate (SIGHUP):",
        files,
    )
    return 0


def _print_files(title: str, files: dict[str, Path]) -> None:
    print(title)
    for name, file in sorted(files.items()):
        print(f"  {name:16} {file}")


def cmd_probe(args: argparse.Namespace) -> int:
    from gateway.crypto import Certificate, SM2PrivateKey, read_key_file
    from gateway.probe import ProbeOptions, probe
    from gateway.tlcp import Credentials

    host, _, port = args.target.rpartition(":")
    if not host or not port.isdigit():
        print(f"ybgate probe: target must be HOST:PORT, got {args.target!r}", file=sys.stderr)
        return 2
    ca, creds, tlcp = args.ca, None, None
    try:
        if args.config is not None:
            config = _load(args.config)
            if config is None:
                return 1
            tlcp = next((u.tlcp for u in config.upstreams if (u.host, str(u.port)) == (host, port)), None)
            if config.identity is not None and (tlcp is None or tlcp.client_auth):
                from gateway.identity import load_identity

                ca = ca or config.identity.ca_bundle
                creds = load_identity(config.identity).credentials
        elif args.sign_cert and args.sign_key and args.enc_cert and args.enc_key:
            creds = Credentials(
                SM2PrivateKey(read_key_file(args.sign_key)),
                Certificate.from_pem(args.sign_cert.read_bytes()),
                SM2PrivateKey(read_key_file(args.enc_key)),
                Certificate.from_pem(args.enc_cert.read_bytes()),
            )
        request = args.request.read_bytes() if args.request else None
        code, lines = asyncio.run(
            probe(
                ProbeOptions(
                    host,
                    int(port),
                    ca=ca,
                    credentials=creds,
                    suites=tuple(args.suite),
                    server_name=args.server_name or (tlcp.server_name if tlcp else None),
                    request=request,
                    **(tlcp.model_dump(include={"client_cert_shape", "certificate_verify", "alerts"}) if tlcp else {}),
                )
            )
        )
    except (GatewayError, OSError, KeyError) as exc:
        print(f"ybgate probe: {getattr(exc, 'message', exc)}", file=sys.stderr)
        return 1
    for line in lines:
        print(line)
    return code


def _demo(args: argparse.Namespace) -> int:
    from gateway.demo import main_demo

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


def _certs(args: argparse.Namespace) -> int:
    if args.certs_command == "check":
        return cmd_certs_check(args.config)
    if args.certs_command == "issue":
        return cmd_certs_issue(args.directory, args.role, args.name)
    return cmd_gen_test_pki(args.directory, args.name, args.keep_ca_key, args.force)


COMMANDS: dict[str, Any] = {
    "check": lambda a: cmd_check(a.config),
    "run": lambda a: cmd_run(a.config),
    "demo": _demo,
    "certs": _certs,
    "outbox": cmd_outbox,
    "probe": cmd_probe,
    "status": lambda a: cmd_status(a.config, a.json),
    "sim": lambda a: cmd_sim(a.host, a.port, a.admin_port, a.pki, journal=a.journal),
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
