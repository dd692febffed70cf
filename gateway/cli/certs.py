"""`ybgate certs check|gen-test-pki|issue`: the configured SM2 certificates and keys, and a test PKI."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from gateway.cli import refusals as cli_refusals
from gateway.cli.config_file import read_config
from gateway.config import DEFAULT_CONFIG_PATH


def add_parser(sub: Any) -> None:
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


def cmd_certs_check(path: Path) -> int:
    from gateway.secretfile import SecretFileError

    config = read_config(path)
    if config is None:
        return 1
    if config.identity is None:
        print(f"{path}: no identity section (sign/enc certificates and keys) to check", file=sys.stderr)
        return 1
    try:
        findings = cli_refusals.identity_findings(config)
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


def run(args: argparse.Namespace) -> int:
    if args.certs_command == "check":
        return cmd_certs_check(args.config)
    if args.certs_command == "issue":
        return cmd_certs_issue(args.directory, args.role, args.name)
    return cmd_gen_test_pki(args.directory, args.name, args.keep_ca_key, args.force)
