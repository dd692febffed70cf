"""TLCP to the platform: the upstream transport, and the certificate check both ends use.

A failed handshake means nothing was sent, so it is reported as an unreachable upstream: the relay may then
try the backup link for any transaction.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Sequence

from gateway.crypto import Certificate, CertificateError, verify_chain
from gateway.crypto.certs import ENC, SIGN
from gateway.net.tlcp_stream import open_tlcp_connection
from gateway.net.transport import UpstreamTarget, UpstreamUnreachable
from gateway.tlcp import AlertDescription, PeerVerifier, TLCPAlert, TLCPConfig


def chain_verifier(roots: list[Certificate], *, pins: frozenset[str] = frozenset()) -> PeerVerifier:
    """Check a peer's [sign, enc?, chain…] against `roots` and the TLCP roles; refuse with the fitting alert.

    `pins`, when given, are the sign-certificate subjects accepted (a callback listener pins the platform)."""

    def verify(certs: Sequence[Certificate]) -> None:
        if not certs:
            raise TLCPAlert(AlertDescription.bad_certificate, "the peer sent no certificate")
        now = dt.datetime.now(dt.UTC)
        sign, rest = certs[0], list(certs[1:])
        # GmSSL clients send [sign] (and sometimes a CA cert) only; Tongsuo sends [sign, enc, …].
        enc = rest[0] if rest and not rest[0].is_ca else None
        chain = [c for c in rest if c is not enc]
        for cert, role in ((sign, SIGN), (enc, ENC)):
            if cert is None:
                continue
            try:
                verify_chain(cert, chain, roots, now, role)
            except CertificateError as err:
                raise TLCPAlert(_alert_for(err.message), err.message) from None
        if pins and sign.subject not in pins:
            raise TLCPAlert(AlertDescription.bad_certificate, f"{sign.subject} is not a pinned peer")

    return verify


def _alert_for(message: str) -> int:
    if "expired" in message or "not valid before" in message:
        return AlertDescription.certificate_expired
    if "not a trusted CA" in message:
        return AlertDescription.unknown_ca
    if "key usage" in message:
        return AlertDescription.unsupported_certificate
    return AlertDescription.bad_certificate


class TlcpTransport:
    """Opens TLCP connections; each upstream may have its own interop settings (client cert shape, SNI…)."""

    def __init__(self, configs: dict[str, TLCPConfig]) -> None:
        self.configs = configs

    async def open(self, target: UpstreamTarget) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        config = self.configs[target.name]
        try:
            reader, writer = await open_tlcp_connection(
                target.host, target.port, config=config, timeout=target.connect_timeout
            )
        except TLCPAlert as alert:
            raise UpstreamUnreachable(
                f"{target.name} ({target.host}:{target.port}): TLCP handshake failed: {alert.message}"
            ) from None
        except TimeoutError:
            raise UpstreamUnreachable(
                f"{target.name} ({target.host}:{target.port}): connect and handshake took "
                f"over {target.connect_timeout}s"
            ) from None
        except OSError as exc:
            raise UpstreamUnreachable(f"{target.name} ({target.host}:{target.port}): {exc.strerror or exc}") from None
        return reader, writer  # type: ignore[return-value]  # TLCPStreamWriter is a StreamWriter in all we use


class RoutedTransport:
    """One transport per upstream name: TLCP to the platform, plain TCP only where development allows it."""

    def __init__(self, routes: dict[str, object]) -> None:
        self.routes = routes

    async def open(self, target: UpstreamTarget) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await self.routes[target.name].open(target)  # type: ignore[attr-defined, no-any-return]
