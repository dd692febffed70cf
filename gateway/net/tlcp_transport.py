"""TLCP to the platform: the upstream transport, and the certificate check both ends use.

A failed handshake means nothing was sent, so it is reported as an unreachable upstream: the relay may then
try the backup link for any transaction.

Connections that carry money-moving work are never reused (net/connections.py), so the relay opens one per such
request. Each would cost both sides a full handshake (SM2 signatures, an SM2 decryption, chain checks): the
transport keeps the session of an upstream's last full handshake and offers it on the next connections, for a
configured lifetime. The session was made under the settings in force then; after a certificate rotation the
settings are new objects and the old session is not offered again.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import time
from collections.abc import Callable, Mapping, Sequence

from gateway.crypto import Certificate, CertificateError, verify_chain
from gateway.crypto.certs import ENC, SIGN
from gateway.net.tlcp_adaptive import AuthChoice, AutoSettings, UpstreamMemory, open_adaptive
from gateway.net.transport import UpstreamTarget, UpstreamUnreachable, os_reason, watch_liveness
from gateway.tlcp import AlertDescription, PeerVerifier, TLCPAlert, TLCPConfig, TlcpSession


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


def ca_names(roots: Sequence[Certificate]) -> tuple[bytes, ...]:
    """The certificate-authorities list of a CertificateRequest: the subjects of the CAs client certificates may
    chain to. GmSSL clients present a certificate only when its CA is listed (unsupported_certificate otherwise);
    Tongsuo clients do not mind either way."""
    return tuple(dict.fromkeys(root.subject_der for root in roots))


def _alert_for(message: str) -> int:
    if "expired" in message or "not valid before" in message:
        return AlertDescription.certificate_expired
    if "not a trusted CA" in message:
        return AlertDescription.unknown_ca
    if "key usage" in message:
        return AlertDescription.unsupported_certificate
    return AlertDescription.bad_certificate


@dataclasses.dataclass(frozen=True)
class _Kept:
    config: TLCPConfig  # the settings the session was made under
    session: TlcpSession
    until: float  # monotonic


class TlcpTransport:
    """Opens TLCP connections; each upstream may have its own interop settings (client cert shape, SNI…) and its
    own session lifetime (0: never resume). What ``auto`` leaves to find (tlcp_adaptive) is remembered per
    upstream in ``memories``."""

    def __init__(
        self,
        configs: dict[str, TLCPConfig],
        session_lifetimes: Mapping[str, float] | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_handshake: Callable[[str, bool], None] | None = None,
        auto: Mapping[str, AutoSettings] | None = None,
        on_learned: Callable[[str, AuthChoice], None] | None = None,
    ) -> None:
        self.configs = configs
        self.session_lifetimes = dict(session_lifetimes or {})
        self.clock = clock
        #: told (upstream name, resumed) after each completed handshake
        self.on_handshake = on_handshake
        self._kept: dict[str, _Kept] = {}
        self.auto = dict(auto or {})
        #: told (upstream name, what worked) when a client-auth form other than the first tried was accepted
        self.on_learned = on_learned
        self.memories: dict[str, UpstreamMemory] = {}

    def _offer(self, name: str, config: TLCPConfig) -> TLCPConfig:
        kept = self._kept.get(name)
        if kept is None:
            return config
        if kept.config is not config or self.clock() >= kept.until:
            del self._kept[name]
            return config
        return dataclasses.replace(config, session=kept.session)

    def _keep(self, name: str, config: TLCPConfig, session: TlcpSession | None, resumed: bool) -> None:
        lifetime = self.session_lifetimes.get(name, 0.0)
        # A resumed session keeps the deadline of the full handshake that made it: a lifetime is not extended by use.
        if resumed or lifetime <= 0 or session is None or not session.session_id:
            return  # an empty session id: the server keeps no sessions, so there is nothing to offer it later
        self._kept[name] = _Kept(config, session, self.clock() + lifetime)

    async def open(self, target: UpstreamTarget) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        config = self.configs[target.name]
        offered = self._offer(target.name, config)
        learned = self.on_learned
        try:
            reader, writer = await open_adaptive(
                target.host,
                target.port,
                config=offered,
                memory=self.memories.setdefault(target.name, UpstreamMemory()),
                auto=self.auto.get(target.name, AutoSettings()),
                timeout=target.connect_timeout,
                upstream=target.name,
                on_learned=(lambda choice: learned(target.name, choice)) if learned else None,
            )
        except (TLCPAlert, TimeoutError, OSError) as exc:
            # Whatever went wrong (a peer that chokes on the offer included), the next attempt starts afresh.
            self._kept.pop(target.name, None)
            raise _unreachable(target, exc) from None
        watch_liveness(writer, target.dead_after)  # type: ignore[arg-type]  # a StreamWriter in all it uses
        done = writer.handshake
        self._keep(target.name, config, done.session, done.resumed)
        if self.on_handshake is not None:
            self.on_handshake(target.name, done.resumed)
        return reader, writer  # type: ignore[return-value]  # TLCPStreamWriter is a StreamWriter in all we use


def _unreachable(target: UpstreamTarget, exc: Exception) -> UpstreamUnreachable:
    where = f"{target.name} ({target.host}:{target.port})"
    if isinstance(exc, TLCPAlert):
        return UpstreamUnreachable(f"{where}: TLCP handshake failed: {exc.message}")
    if isinstance(exc, TimeoutError):
        return UpstreamUnreachable(f"{where}: connect and handshake took over {target.connect_timeout}s")
    assert isinstance(exc, OSError)
    return UpstreamUnreachable(f"{where}: {os_reason(exc)}")


class RoutedTransport:
    """One transport per upstream name: TLCP to the platform, plain TCP only where development allows it."""

    def __init__(self, routes: dict[str, object]) -> None:
        self.routes = routes

    async def open(self, target: UpstreamTarget) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await self.routes[target.name].open(target)  # type: ignore[attr-defined, no-any-return]
