"""The relay over real TLCP to the simulator, as on a 前置机: mutual SM2 authentication with the test PKI, and
what happens when the platform's certificate or ours does not check out."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from gateway.app.daemon import Daemon
from gateway.app.demo import demo_config, demo_policy, sim_tlcp_config
from gateway.config import Config, load_config_text
from gateway.crypto.testpki import generate_test_pki
from gateway.errors import ConfigError
from gateway.http1.client import exchange
from gateway.net.tlcp_stream import start_tlcp_server
from gateway.sim.server import Simulator
from gateway.tlcp import TLCPAlert

from conftest import Gateway, fresh

KAT_CA = Path(__file__).parent / "data" / "crypto" / "pki" / "ca.crt.pem"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_test_pki(tmp_path_factory.mktemp("pki") / "pki")["ca"].parent


@pytest_asyncio.fixture
async def tlcp_sim(pki: Path) -> AsyncIterator[Simulator]:
    sim = Simulator()
    await sim.start(tlcp=sim_tlcp_config(pki))
    yield sim
    await sim.stop()


async def start(sim: Simulator, state: Path, pki: Path) -> Gateway:
    assert sim.addresses is not None
    config = demo_config(state, sim.addresses.platform, pki=pki)
    daemon = Daemon(config)
    await daemon.start()
    return Gateway(daemon, config, sim)


async def test_settlement_over_mutual_tlcp(tlcp_sim: Simulator, pki: Path, short_tmp: Path) -> None:
    gw = await start(tlcp_sim, short_tmp, pki)
    try:
        sign_no = await gw.sign_in()
        reply = await gw.post(fresh("2207_settle_request.json", sign_no=sign_no))
        assert reply.status == 200 and str(json.loads(reply.body)["infcode"]) == "0"
        assert len(tlcp_sim.ledger.settlements) == 1
    finally:
        await gw.daemon.stop(1)


async def start_with(sim: Simulator, state: Path, pki: Path, **tlcp: object) -> tuple[Config, Daemon]:
    """A started daemon whose upstream has these `tlcp` settings changed; the demo config it came from."""
    assert sim.addresses is not None
    config = demo_config(state, sim.addresses.platform, pki=pki)
    up = config.upstreams[0]
    up = up.model_copy(update={"tlcp": up.tlcp.model_copy(update=tlcp)})
    daemon = Daemon(config.model_copy(update={"upstreams": [up]}))
    await daemon.start()
    return config, daemon


def _handshakes(daemon: Daemon, kind: str) -> float:
    value = daemon.metrics.registry.get_sample_value("ybgate_tlcp_handshakes_total", {"upstream": "sim", "kind": kind})
    return value or 0.0


async def test_settlements_resume_the_tunnel_session(tlcp_sim: Simulator, pki: Path, short_tmp: Path) -> None:
    """Money-moving work never shares a connection (net/connections.py), so each settlement opens its own; only
    the first pays the full SM2 handshake, the rest resume its session."""
    gw = await start(tlcp_sim, short_tmp, pki)
    try:
        sign_no = await gw.sign_in()
        for _ in range(3):
            reply = await gw.post(fresh("2207_settle_request.json", sign_no=sign_no))
            assert reply.status == 200 and str(json.loads(reply.body)["infcode"]) == "0"
        assert len(tlcp_sim.ledger.settlements) == 3
        # The upstream probe connects too, and may overlap the sign-in before any session is kept: two full
        # handshakes at most, whatever the number of requests after them.
        full, resumed = _handshakes(gw.daemon, "full"), _handshakes(gw.daemon, "resumed")
        assert 1 <= full <= 2 and full + resumed >= 4 and resumed >= 2
    finally:
        await gw.daemon.stop(1)


async def test_session_lifetime_zero_means_a_full_handshake_each_time(
    tlcp_sim: Simulator, pki: Path, short_tmp: Path
) -> None:
    config, daemon = await start_with(tlcp_sim, short_tmp, pki, session_lifetime=0.0)
    try:
        gw = Gateway(daemon, config, tlcp_sim)
        sign_no = await gw.sign_in()
        for _ in range(2):
            assert (await gw.post(fresh("2207_settle_request.json", sign_no=sign_no))).status == 200
        assert _handshakes(daemon, "resumed") == 0 and _handshakes(daemon, "full") >= 3
    finally:
        await daemon.stop(1)


async def test_platform_from_an_unknown_ca_is_never_sent_anything(pki: Path, short_tmp: Path) -> None:
    other = generate_test_pki(short_tmp / "other")["ca"].parent  # a platform certified by another CA
    impostor = Simulator()
    await impostor.start(tlcp=sim_tlcp_config(other))
    gw = await start(impostor, short_tmp, pki)
    try:
        reply = await gw.post(fresh("9001_signin_request.json"))
        doc = json.loads(reply.body)
        assert reply.status == 502 and doc["gateway_error"] == "not_processed"
        assert "TLCP handshake failed" in doc["err_msg"] and "not a trusted CA" in doc["err_msg"]
        assert impostor.ledger.messages == []
    finally:
        await gw.daemon.stop(1)
        await impostor.stop()


def test_own_identity_from_another_ca_stops_the_start(pki: Path, short_tmp: Path) -> None:
    config = demo_config(short_tmp, ("127.0.0.1", 9), pki=pki)
    assert config.identity is not None
    bad = config.model_copy(update={"identity": config.identity.model_copy(update={"ca_bundle": KAT_CA})})
    from gateway.app.assembly import build_transport
    from gateway.errors import GatewayError

    with pytest.raises(GatewayError, match="is not a trusted CA"):
        build_transport(bad)


async def test_platform_refuses_a_gateway_without_client_certificate(
    tlcp_sim: Simulator, pki: Path, short_tmp: Path
) -> None:
    config, daemon = await start_with(tlcp_sim, short_tmp, pki, client_auth=False)
    try:
        reply = await Gateway(daemon, config, tlcp_sim).post(fresh("9001_signin_request.json"))
        assert reply.status == 502 and "handshake" in json.loads(reply.body)["err_msg"]
        assert tlcp_sim.ledger.messages == []
    finally:
        await daemon.stop(1)


def test_tlcp_needs_an_identity() -> None:
    with pytest.raises(ConfigError, match="need the identity section"):
        load_config_text("upstreams: [{name: p, host: 10.1.2.3, port: 8443}]\n")


def test_daemon_refuses_to_start_with_a_readable_key(pki: Path, tmp_path: Path) -> None:
    keys = tmp_path / "pki"
    shutil.copytree(pki, keys)
    (keys / "client_sign.key.pem").chmod(0o644)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        f"state_dir: {tmp_path}/state\nruntime_dir: {tmp_path}/run\nadmin: {{enabled: false}}\n"
        "upstreams: [{name: p, host: 127.0.0.1, port: 9, transport: tlcp}]\n"
        f"identity: {{sign_cert: {keys}/client_sign.crt.pem, sign_key: {keys}/client_sign.key.pem, "
        f"enc_cert: {keys}/client_enc.crt.pem, enc_key: {keys}/client_enc.key.pem, ca_bundle: {keys}/ca.crt.pem}}\n"
        + demo_policy(tmp_path, ("127.0.0.1", 9))
    )
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "run", "--config", str(cfg)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=os.environ,
    )
    assert result.returncode == 78  # EX_CONFIG: the unit does not restart it
    assert "not starting" in result.stderr and "client_sign.key.pem" in result.stderr and "chmod 600" in result.stderr
    assert "Traceback" not in result.stderr


def test_upstream_tlcp_client_auth_settings_reach_the_transport(pki: Path, short_tmp: Path) -> None:
    from gateway.app.assembly import auto_settings, tlcp_configs
    from gateway.tlcp import AlertStyle, CertVerifyForm, ClientCertShape

    config = demo_config(short_tmp, ("127.0.0.1", 9), pki=pki)
    (name,) = [u.name for u in config.upstreams]
    built = tlcp_configs(config)[name]
    assert (built.client_cert_shape, built.cert_verify_form, built.alerts) == (
        ClientCertShape.AUTO,
        CertVerifyForm.SM3,  # the standard form first; raw only after a refusal
        AlertStyle.AUTO,
    )
    assert auto_settings(config)[name].shape and auto_settings(config)[name].form
    fixed = {"client_cert_shape": "sign", "certificate_verify": "raw", "alerts": "clear"}
    upstream = config.upstreams[0]
    config = config.model_copy(
        update={"upstreams": [upstream.model_copy(update={"tlcp": upstream.tlcp.model_copy(update=fixed)})]}
    )
    built = tlcp_configs(config)[name]
    assert (built.client_cert_shape, built.cert_verify_form, built.alerts) == (
        ClientCertShape.SIGN_ONLY,
        CertVerifyForm.RAW,
        AlertStyle.CLEAR,
    )
    assert not auto_settings(config)[name].shape and not auto_settings(config)[name].form


async def _read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")
    )
    return head + await reader.readexactly(length)


async def alerting_platform(sim: Simulator, pki: Path, infno: str) -> asyncio.Server:
    """The platform over TLCP in front of the simulator: each request is passed on and its answer returned, except
    that a request for `infno` is booked at the simulator and then answered with a fatal TLCP alert instead of
    its answer (a platform front end failing after the work was done)."""
    assert sim.addresses is not None
    host, port = sim.addresses.platform

    async def serve(reader: asyncio.StreamReader, writer: Any) -> None:
        try:
            while True:
                request = await _read_request(reader)
                up_reader, up_writer = await asyncio.open_connection(host, port)
                reply = await exchange(up_reader, up_writer, request)
                up_writer.close()
                if f'"infno": "{infno}"'.encode() in request or f'"infno":"{infno}"'.encode() in request:
                    # a fatal internal_error alert in the clear, as GmSSL sends its alerts, on the raw socket
                    os.write(writer.get_extra_info("socket").fileno(), bytes([21, 1, 1, 0, 2, 2, 80]))
                    return
                head = f"HTTP/1.1 {reply.status} OK\r\nContent-Length: {len(reply.body)}\r\n"
                head += "".join(f"{k}: {v}\r\n" for k, v in reply.headers.items if k.lower() != "content-length")
                writer.write(head.encode("latin-1") + b"\r\n" + reply.body)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, TLCPAlert):
            return
        finally:
            writer.close()

    return await start_tlcp_server(serve, "127.0.0.1", 0, config=sim_tlcp_config(pki))


async def test_an_alert_in_place_of_the_answer_is_an_unknown_outcome_resolved_by_the_class_rule(
    pki: Path, short_tmp: Path
) -> None:
    # The settlement reached the platform and was booked; the tunnel then broke with a fatal alert. The old code
    # let the alert through as a "tlcp" failure: the HIS heard the gateway's own error, and the row stayed in
    # flight with nobody resolving it until a restart. It is an unknown outcome, resolved by its class rule (冲正 for
    # a settlement) like any other.
    sim = Simulator()
    await sim.start()
    front = await alerting_platform(sim, pki, "2207")
    config = demo_config(short_tmp, front.sockets[0].getsockname()[:2], pki=pki)
    daemon = Daemon(config)
    await daemon.start()
    gw = Gateway(daemon, config, sim)
    try:
        sign_no = await gw.sign_in()
        doc = fresh("2207_settle_request.json", sign_no=sign_no)
        reply = await gw.post(doc)
        answer = json.loads(reply.body)
        assert answer["gateway_error"] == "reversed", answer
        [booked] = sim.ledger.by_msgid(str(doc["msgid"]))
        assert booked.state == "reversed"
        assert daemon.outbox is not None
        row = await daemon.outbox.get(str(doc["msgid"]))
        assert row is not None and row.state.final
        again = await gw.post(doc)
        assert json.loads(again.body)["gateway_error"] == "reversed"
        assert len(sim.ledger.settlements) == 1
    finally:
        await daemon.stop(1)
        front.close()
        await front.wait_closed()
        await sim.stop()
