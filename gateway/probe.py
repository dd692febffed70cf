"""`ybgate probe HOST:PORT`: one TLCP handshake (and optionally one platform request), reported plainly.

Ops use it to check the 专网 path from the 前置机: which suite was negotiated, whose certificates the platform
presented and until when they are valid, whether it asked for ours and which form it took (found as the daemon
finds it: net/tlcp_adaptive), whether it resumes sessions, how long the handshake took — or exactly which alert
ended it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import time
from dataclasses import dataclass
from pathlib import Path

from gateway.crypto import Certificate
from gateway.http1.client import BadUpstreamResponse, encode_request, exchange
from gateway.net.tlcp_adaptive import AuthChoice, UpstreamMemory, configured, open_adaptive
from gateway.net.tlcp_stream import open_tlcp_connection
from gateway.net.tlcp_transport import chain_verifier
from gateway.tlcp import AlertStyle, CertVerifyForm, ClientAuth, ClientCertShape, Credentials, TLCPAlert, TLCPConfig
from gateway.tlcp.suites import ALL_SUITES, BY_NAME


@dataclass(frozen=True)
class ProbeOptions:
    host: str
    port: int
    ca: Path | None = None
    credentials: Credentials | None = None
    suites: tuple[str, ...] = ()
    server_name: str | None = None
    timeout: float = 10.0
    request: bytes | None = None
    path: str = "/fsi/api/rsfComIfsService/callService"
    #: as upstreams.tlcp.client_cert_shape / certificate_verify / alerts ("auto": found as the daemon does)
    client_cert_shape: str = "auto"
    certificate_verify: str = "auto"
    alerts: str = "auto"


def _describe(cert: Certificate, now: dt.datetime) -> str:
    return f"{cert.subject} (valid until {cert.not_after:%Y-%m-%d}, {cert.days_left(now):.0f} days)"


async def probe(opts: ProbeOptions) -> tuple[int, list[str]]:
    """(exit code, lines to print)."""
    roots = Certificate.load_pem_chain(opts.ca.read_bytes()) if opts.ca else []
    suites = tuple(BY_NAME[s] for s in opts.suites) if opts.suites else ALL_SUITES
    shape, form, auto = configured(opts.client_cert_shape, opts.certificate_verify)
    config = TLCPConfig(
        credentials=opts.credentials,
        cipher_suites=suites,
        verify_peer=chain_verifier(roots) if roots else None,
        insecure_no_verify=not roots,
        server_name=opts.server_name,
        client_cert_shape=shape,
        cert_verify_form=form,
        alerts=AlertStyle(opts.alerts),
    )
    memory = UpstreamMemory()
    lines = [f"probing {opts.host}:{opts.port} (TLCP, suites {', '.join(s.name for s in suites)})"]
    if not roots:
        lines.append("WARNING: no --ca given: the platform's certificates are shown but NOT verified")
    started = time.perf_counter()
    try:
        reader, writer = await open_adaptive(
            opts.host,
            opts.port,
            config=config,
            memory=memory,
            auto=auto,
            timeout=opts.timeout,
            upstream=f"{opts.host}:{opts.port}",
        )
    except TLCPAlert as alert:
        lines += _refused(memory.tried)
        lines.append(f"FAILED: TLCP alert {alert.message}")
        return 1, lines
    except TimeoutError:
        lines.append(f"FAILED: no completed handshake within {opts.timeout}s")
        return 1, lines
    except OSError as exc:
        lines.append(f"FAILED: cannot connect: {exc.strerror or exc}")
        return 1, lines
    elapsed = (time.perf_counter() - started) * 1000
    hs = writer.handshake
    now = dt.datetime.now(dt.UTC)
    lines.append(f"handshake ok in {elapsed:.1f} ms: {hs.cipher_suite.name}")
    certs = list(hs.peer_certificates)
    if certs:
        lines.append(f"  sign cert: {_describe(certs[0], now)}")
    if len(certs) > 1:
        lines.append(f"  enc cert:  {_describe(certs[1], now)}")
    lines += _client_auth(hs.client_auth, opts.credentials is not None)
    lines += _refused(memory.tried[:-1])  # the last one tried is the one that worked
    code = 0
    if opts.request is not None:
        try:
            async with asyncio.timeout(opts.timeout):
                reply = await exchange(
                    reader,
                    writer,  # type: ignore[arg-type]
                    encode_request(
                        "POST",
                        f"{opts.host}:{opts.port}",
                        opts.path,
                        [("Content-Type", "application/json;charset=utf-8")],
                        opts.request,
                    ),
                )
            lines.append(
                f"request: HTTP {reply.status}, {len(reply.body)} bytes: {reply.body[:200].decode(errors='replace')}"
            )
        except (TimeoutError, BadUpstreamResponse, ConnectionError) as exc:
            lines.append(f"request FAILED: {exc}")
            code = 1
    writer.close()
    await writer.wait_closed()
    lines.append(await _resumption(opts, dataclasses.replace(config, session=hs.session), memory))
    return code, lines


def _client_auth(auth: ClientAuth | None, have_certs: bool) -> list[str]:
    if auth is None or not auth.requested:
        return [f"  client certificate: not asked for{' (ours not sent)' if have_certs else ''}"]
    if auth.shape is None or auth.form is None:
        return ["  client certificate: asked for, none sent (no client certificates given)"]
    shape = "sign only" if auth.shape is ClientCertShape.SIGN_ONLY else "sign + enc"
    form = "SM3 of the handshake" if auth.form is CertVerifyForm.SM3 else "raw handshake messages"
    return [f"  client certificate sent: {shape}; CertificateVerify over {form} ({auth.form.value})"]


def _refused(choices: list[AuthChoice]) -> list[str]:
    return [f"  refused: client certificate {c.shape.value}, CertificateVerify {c.form.value}" for c in choices]


async def _resumption(opts: ProbeOptions, config: TLCPConfig, memory: UpstreamMemory) -> str:
    """A second handshake offering the first one's session: does the platform resume (no SM2 work)?"""
    if config.session is None or not config.session.session_id:
        return "  resumption: no (the server issued no session id)"
    if memory.choice is not None:
        config = dataclasses.replace(config, client_cert_shape=memory.choice.shape, cert_verify_form=memory.choice.form)
    try:
        _reader, writer = await open_tlcp_connection(opts.host, opts.port, config=config, timeout=opts.timeout)
    except TimeoutError:
        return f"  resumption: the second handshake did not complete within {opts.timeout}s"
    except (TLCPAlert, OSError) as exc:
        return f"  resumption: the second handshake failed ({getattr(exc, 'message', exc)})"
    resumed = writer.handshake.resumed
    writer.close()
    await writer.wait_closed()
    return (
        "  resumption: yes (a second handshake resumed the session)"
        if resumed
        else ("  resumption: no (session id issued, but the second handshake was a full one)")
    )
