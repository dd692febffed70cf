"""Client authentication that works with every reference stack, found per upstream and remembered.

GmSSL 3.1.1 wants [sign] and a CertificateVerify over SM3(handshake), GmSSL 3.2.0 [sign] and one over the raw
handshake messages, Tongsuo [sign, enc] and SM3 (../tests/data/tlcp/README.md shows each). The server's
CertificateRequest tells GmSSL from Tongsuo (the sans-IO client reads it when the shape is AUTO), but not one GmSSL
release from the other. So a handshake in which we authenticated and the server then refused is tried again with
the other CertificateVerify form, then the other shape; what worked is remembered for the upstream (logged, and
told to ``on_learned`` for a metric) and used first from then on. A remembered choice the upstream refuses (the
platform changed its stack) sends the search back to the start: the configured choice, then the others.

Alerts work the same way: with ``AlertStyle.AUTO`` a connection answers in the clear once its peer has sent an
alert in the clear (GmSSL 3.1.1 cannot parse an encrypted one); the memory makes later connections to that
upstream start that way, so even our first alert (a close_notify) reaches it.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable

import structlog

from gateway.net.tlcp_stream import TLCPStreamWriter, connect_client
from gateway.tlcp import AlertStyle, CertVerifyForm, ClientCertShape, TLCPAlert, TLCPConfig
from gateway.tlcp.client import ClientConnection

log = structlog.get_logger(__name__)

_OTHER_FORM = {CertVerifyForm.SM3: CertVerifyForm.RAW, CertVerifyForm.RAW: CertVerifyForm.SM3}
_OTHER_SHAPE = {
    ClientCertShape.SIGN_ENC: ClientCertShape.SIGN_ONLY,
    ClientCertShape.SIGN_ONLY: ClientCertShape.SIGN_ENC,
}


@dataclasses.dataclass(frozen=True)
class AuthChoice:
    shape: ClientCertShape
    form: CertVerifyForm


@dataclasses.dataclass(frozen=True)
class AutoSettings:
    """Which of the client-auth choices are the gateway's to find (``auto`` in the configuration)."""

    shape: bool = True
    form: bool = True


def configured(client_cert_shape: str, certificate_verify: str) -> tuple[ClientCertShape, CertVerifyForm, AutoSettings]:
    """The configuration's words (auto | sign_enc | sign, auto | sm3 | raw) as what the first handshake uses and
    what is left to find: the shape's auto is the sans-IO client's own (from the CertificateRequest), the form's
    starts with the standard SM3."""
    form = CertVerifyForm.SM3 if certificate_verify == "auto" else CertVerifyForm(certificate_verify)
    auto = AutoSettings(shape=client_cert_shape == "auto", form=certificate_verify == "auto")
    return ClientCertShape(client_cert_shape), form, auto


@dataclasses.dataclass
class UpstreamMemory:
    """What was learned about one upstream; lives as long as the process (a restart finds it again)."""

    choice: AuthChoice | None = None
    clear_alerts: bool = False
    #: what the last open that finished tried, in order (what the probe prints)
    tried: list[AuthChoice] = dataclasses.field(default_factory=list)


def _prepared(config: TLCPConfig, memory: UpstreamMemory) -> TLCPConfig:
    if memory.choice is not None:
        config = dataclasses.replace(config, client_cert_shape=memory.choice.shape, cert_verify_form=memory.choice.form)
    if memory.clear_alerts and config.alerts is AlertStyle.AUTO:
        config = dataclasses.replace(config, alerts=AlertStyle.CLEAR)
    return config


def _next_choices(sent: AuthChoice, auto: AutoSettings) -> list[AuthChoice]:
    """What to try after ``sent`` was refused: the other form first (the GmSSL releases differ only there),
    then the other shape."""
    forms = [sent.form, _OTHER_FORM[sent.form]] if auto.form else [sent.form]
    shapes = [sent.shape, _OTHER_SHAPE[sent.shape]] if auto.shape else [sent.shape]
    return [AuthChoice(s, f) for s in shapes for f in forms if AuthChoice(s, f) != sent]


async def open_adaptive(
    host: str,
    port: int,
    *,
    config: TLCPConfig,
    memory: UpstreamMemory,
    auto: AutoSettings = AutoSettings(),
    timeout: float = 10.0,  # noqa: ASYNC109 - one deadline for every handshake tried, the caller's budget
    upstream: str = "",
    on_learned: Callable[[AuthChoice], None] | None = None,
) -> tuple[asyncio.StreamReader, TLCPStreamWriter]:
    """Connect and complete a TLCP handshake, finding the client-auth form the server accepts."""
    search = _Search(host, port, config, memory, auto, upstream, on_learned)
    try:
        return await search.run(timeout)
    finally:
        memory.tried = search.tried


@dataclasses.dataclass
class _Search:
    """One open's search; its own ``tried`` list, as the pool opens several connections to an upstream at once."""

    host: str
    port: int
    config: TLCPConfig
    memory: UpstreamMemory
    auto: AutoSettings
    upstream: str
    on_learned: Callable[[AuthChoice], None] | None
    tried: list[AuthChoice] = dataclasses.field(default_factory=list)

    async def run(self, timeout: float) -> tuple[asyncio.StreamReader, TLCPStreamWriter]:  # noqa: ASYNC109
        memory = self.memory
        deadline = asyncio.get_running_loop().time() + timeout
        pending: list[AuthChoice] | None = None
        from_memory = memory.choice is not None
        attempt = _prepared(self.config, memory)
        while True:
            conn = ClientConnection(attempt)
            try:
                reader, writer = await connect_client(
                    self.host,
                    self.port,
                    conn,
                    timeout=max(deadline - asyncio.get_running_loop().time(), 0.0),
                    on_clear_alerts=lambda: _clear(memory, self.upstream),
                )
            except (TLCPAlert, ConnectionError):
                # GmSSL 3.2.0 answers a CertificateVerify it cannot verify with a reset, not an alert
                sent = _sent(conn)
                if sent is None:
                    raise  # refused before we authenticated: another certificate form would not help
                self.tried.append(sent)
                if from_memory:
                    from_memory = False
                    memory.choice = None
                    attempt = _prepared(self.config, memory)
                    self._retry(sent, "configured")
                    continue
                if pending is None:
                    pending = _next_choices(sent, self.auto)
                pending = [c for c in pending if c not in self.tried]
                if not pending:
                    raise
                nxt = pending.pop(0)
                self._retry(sent, _label(nxt))
                attempt = dataclasses.replace(attempt, client_cert_shape=nxt.shape, cert_verify_form=nxt.form)
                continue
            self._succeeded(_sent(conn))
            return reader, writer

    def _retry(self, refused: AuthChoice, trying: str) -> None:
        log.info("tlcp_client_auth_retry", upstream=self.upstream, refused=_label(refused), trying=trying)

    def _succeeded(self, sent: AuthChoice | None) -> None:
        if sent is None:
            return  # not asked for a certificate: nothing learned
        self.tried.append(sent)
        if sent != self.memory.choice and len(self.tried) > 1:
            log.warning("tlcp_client_auth_learned", upstream=self.upstream, **_fields(sent))
            if self.on_learned is not None:
                self.on_learned(sent)
        self.memory.choice = sent


def _sent(conn: ClientConnection) -> AuthChoice | None:
    auth = conn.client_auth
    if auth.shape is None or auth.form is None:
        return None
    return AuthChoice(auth.shape, auth.form)


def _clear(memory: UpstreamMemory, upstream: str) -> None:
    if not memory.clear_alerts:
        memory.clear_alerts = True
        log.info("tlcp_peer_sends_clear_alerts", upstream=upstream)


def _label(choice: AuthChoice) -> str:
    return f"{choice.shape.value}/{choice.form.value}"


def _fields(choice: AuthChoice) -> dict[str, str]:
    return {"client_cert_shape": choice.shape.value, "certificate_verify": choice.form.value}
