"""`ybgate probe HOST:PORT`: one TLCP handshake, reported plainly."""

from __future__ import annotations

import argparse
import asyncio
import sys

from gateway.cli.config_file import read_config
from gateway.errors import GatewayError


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
            config = read_config(args.config)
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
