"""The platform's callbacks: a real TLCP listener of the gateway, the platform played by a TLCP client holding
the platform's certificates (pinned by the policy), and a local HIS endpoint the calls are handed to."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from gateway.app.daemon import Daemon
from gateway.app.demo import demo_config
from gateway.config import CallbackForward, CallbackSection, Config, PolicySection
from gateway.crypto import Certificate, SM2PrivateKey
from gateway.crypto.testpki import generate_test_pki
from gateway.http1.client import encode_request, exchange
from gateway.net.tlcp_stream import open_tlcp_connection
from gateway.net.tlcp_transport import chain_verifier
from gateway.tlcp import CertVerifyForm, ClientCertShape, Credentials, HandshakeComplete, TLCPAlert, TLCPConfig

CALLBACK_PATH = "/fsi/callback"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class His:
    """The HIS's callback endpoint: records what arrives and answers in the platform's shape."""

    def __init__(self) -> None:
        self.received: list[tuple[str, bytes]] = []
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        async def on(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(int(h.split(b":")[1]) for h in head.split(b"\r\n") if h.lower().startswith(b"content-length"))
            body = await reader.readexactly(length)
            self.received.append((head.split(b" ")[1].decode(), body))
            answer = json.dumps(
                {"infcode": 0, "err_msg": None, "output": {"ack": "已接收"}}, ensure_ascii=False
            ).encode()
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(answer)
            )
            writer.write(answer)
            await writer.drain()
            writer.close()

        self.server = await asyncio.start_server(on, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]


def platform_client(pki: Path, *, role: str = "server") -> TLCPConfig:
    """The platform calling us holds its own certificates (in the test PKI: the 'server' ones)."""
    roots = Certificate.load_pem_chain((pki / "ca.crt.pem").read_bytes())
    creds = Credentials(
        SM2PrivateKey.from_pem((pki / f"{role}_sign.key.pem").read_bytes()),
        Certificate.from_pem((pki / f"{role}_sign.crt.pem").read_bytes()),
        SM2PrivateKey.from_pem((pki / f"{role}_enc.key.pem").read_bytes()),
        Certificate.from_pem((pki / f"{role}_enc.crt.pem").read_bytes()),
    )
    return TLCPConfig(credentials=creds, verify_peer=chain_verifier(roots))


OTHER_CA = Path(__file__).resolve().parent / "data" / "crypto" / "vectors" / "certs" / "other_ca.crt.pem"


def callback_config(tmp: Path, pki: Path, his: His, **settings: Any) -> Config:
    """The demo configuration with the callback listener on a free port, the test PKI's platform pinned."""
    port = free_port()
    platform_subject = Certificate.from_pem((pki / "server_sign.crt.pem").read_bytes()).subject
    config = demo_config(tmp / "gw", ("127.0.0.1", 9), pki=pki)
    assert config.policy is not None
    policy_dir = config.policy.paths[0]
    with (policy_dir / "demo.yaml").open("a") as f:
        f.write(
            f"callback: {{address: 127.0.0.1, port: {port}, sources: [127.0.0.1/32]}}\n"
            f"callback_peers:\n  - subject: {json.dumps(platform_subject, ensure_ascii=False)}\n"
        )
    return config.model_copy(
        update={
            "policy": PolicySection(paths=[policy_dir]),
            "callback": CallbackSection(
                enabled=True, forward=CallbackForward(host="127.0.0.1", port=his.port, path=CALLBACK_PATH), **settings
            ),
        }
    )


@pytest_asyncio.fixture
async def rig(short_tmp: Path, request: pytest.FixtureRequest) -> AsyncIterator[tuple[Daemon, His, Path]]:
    """The daemon with its callback listener; ``request.param`` (indirect parametrization) adds callback
    settings."""
    pki = generate_test_pki(short_tmp / "pki")["ca"].parent
    his = His()
    await his.start()
    daemon = Daemon(callback_config(short_tmp, pki, his, **getattr(request, "param", {})))
    await daemon.start()
    yield daemon, his, pki
    await daemon.stop(1)
    assert his.server is not None
    his.server.close()


async def call(daemon: Daemon, config: TLCPConfig, body: bytes) -> tuple[int, dict[str, object]]:
    status, answer, _ = await call_with_handshake(daemon, config, body)
    return status, answer


async def call_with_handshake(
    daemon: Daemon, config: TLCPConfig, body: bytes
) -> tuple[int, dict[str, object], HandshakeComplete]:
    assert daemon.callback_address is not None
    host, port = daemon.callback_address
    reader, writer = await open_tlcp_connection(host, port, config=config, timeout=10)
    try:
        reply = await exchange(
            reader, writer, encode_request("POST", f"{host}:{port}", "/", [("Content-Type", "application/json")], body)
        )
    finally:
        writer.close()
    return reply.status, json.loads(reply.body), writer.handshake


async def test_the_pinned_platform_reaches_the_his(rig: tuple[Daemon, His, Path]) -> None:
    daemon, his, pki = rig
    notice = json.dumps(
        {"infno": "4401", "input": {"data": {"setl_id": "S1", "msg": "结算单已审核"}}}, ensure_ascii=False
    ).encode()
    status, answer = await call(daemon, platform_client(pki), notice)
    assert status == 200 and answer["output"] == {"ack": "已接收"}
    assert his.received == [(CALLBACK_PATH, notice)]  # handed over unchanged, once


async def test_the_platform_may_resume_its_session(rig: tuple[Daemon, His, Path]) -> None:
    """Each callback is a connection of its own: the listener keeps sessions (as Tongsuo servers do), so the
    platform's next connections skip the SM2 work. Only a session from a pinned, verified peer is ever kept."""
    daemon, his, pki = rig
    notice = json.dumps({"infno": "4401", "input": {"data": {"setl_id": "S2"}}}).encode()
    config = platform_client(pki)
    status, _, first = await call_with_handshake(daemon, config, notice)
    assert status == 200 and not first.resumed and len(first.session.session_id) == 32
    status, _, second = await call_with_handshake(daemon, dataclasses.replace(config, session=first.session), notice)
    assert status == 200 and second.resumed
    assert his.received == [(CALLBACK_PATH, notice)] * 2


async def test_the_request_names_the_ca_bundle_and_a_gmssl_shaped_platform_gets_through(
    rig: tuple[Daemon, His, Path],
) -> None:
    """GmSSL clients present a certificate only when the CertificateRequest names their CA, then send [sign]
    alone and (3.2.0) sign the raw handshake messages: the listener names the identity's CA bundle and takes
    both (an empty list made every GmSSL-based platform fail with unsupported_certificate)."""
    daemon, his, pki = rig
    ca = Certificate.from_pem((pki / "ca.crt.pem").read_bytes())
    gmssl_like = dataclasses.replace(
        platform_client(pki), client_cert_shape=ClientCertShape.SIGN_ONLY, cert_verify_form=CertVerifyForm.RAW
    )
    status, _, done = await call_with_handshake(daemon, gmssl_like, b'{"infno": "4401", "input": {}}')
    assert status == 200
    assert done.client_auth is not None and done.client_auth.authorities == (ca.subject_der,)
    assert done.client_auth.shape is ClientCertShape.SIGN_ONLY and len(his.received) == 1


@pytest.mark.parametrize("rig", [{"client_ca_bundle": OTHER_CA}], indirect=True)
async def test_callback_client_ca_bundle_overrides_the_named_cas(rig: tuple[Daemon, His, Path]) -> None:
    daemon, _his, pki = rig
    other = Certificate.from_pem(OTHER_CA.read_bytes())
    # our client presents its certificate whatever the list says; the pinned platform still gets through
    status, _, done = await call_with_handshake(daemon, platform_client(pki), b'{"infno": "4401", "input": {}}')
    assert status == 200
    assert done.client_auth is not None and done.client_auth.authorities == (other.subject_der,)


async def test_a_certificate_the_policy_does_not_pin_is_refused_in_the_handshake(rig: tuple[Daemon, His, Path]) -> None:
    daemon, his, pki = rig
    with pytest.raises(TLCPAlert):
        # The hospital's own client certificate: same CA, but not the platform's pinned subject.
        await call(daemon, platform_client(pki, role="client"), b"{}")
    assert his.received == []


async def test_his_down_is_a_platform_shaped_not_processed(rig: tuple[Daemon, His, Path]) -> None:
    daemon, his, pki = rig
    assert his.server is not None
    his.server.close()
    await his.server.wait_closed()
    status, answer = await call(daemon, platform_client(pki), b'{"infno": "4401"}')
    assert status == 502 and answer["infcode"] == -1 and "HIS not reachable" in str(answer["err_msg"])
    status, answer = await call(daemon, platform_client(pki), b"not json")
    assert status == 400 and "not JSON" in str(answer["err_msg"])
