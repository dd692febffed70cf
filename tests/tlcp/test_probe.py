"""`ybgate probe` against a real Tongsuo TLCP server (tongsuopy's libssl) and against the simulator."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import sys
import tempfile
from pathlib import Path

from gateway.tlcp.suites import ECC_SM4_GCM_SM3, ECDHE_SM4_CBC_SM3

from .tongsuo_peer import TongsuoError, run_server

PKI = Path(__file__).resolve().parent.parent / "data" / "tlcp" / "pki"
OTHER_CA = Path(__file__).resolve().parent.parent / "data" / "crypto" / "vectors" / "certs" / "other_ca.crt.pem"


async def ybgate(*args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode()


async def test_probe_prints_suite_and_both_certificates() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    # two connections: the probe's second handshake offers the first one's session
    server = asyncio.create_task(asyncio.to_thread(run_server, listener, ECC_SM4_GCM_SM3.code, 0, connections=2))
    try:
        code, out = await ybgate("probe", f"127.0.0.1:{port}", "--ca", str(PKI / "ca.crt.pem"))
    finally:
        await asyncio.wait_for(server, 20)
        listener.close()
    assert code == 0, out
    assert "handshake ok in" in out and "ECC_SM4_GCM_SM3" in out
    assert "sign cert: CN=localhost" in out and "enc cert:  CN=localhost" in out and "valid until 2036" in out
    assert "client certificate: not asked for" in out
    assert "resumption: yes" in out


async def test_probe_with_client_certificates_for_ecdhe() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    server = asyncio.create_task(
        asyncio.to_thread(run_server, listener, ECDHE_SM4_CBC_SM3.code, 0, verify_client=True, connections=2)
    )
    keys = [PKI / f"client_{k}.key.plain.pem" for k in ("sign", "enc")]
    tmp = Path(tempfile.mkdtemp())
    for k in keys:  # git keeps no modes: the probe refuses keys others can read, as the daemon does
        shutil.copyfile(k, tmp / k.name)
        (tmp / k.name).chmod(0o600)
    try:
        code, out = await ybgate(
            "probe",
            f"127.0.0.1:{port}",
            "--ca",
            str(PKI / "ca.crt.pem"),
            "--sign-cert",
            str(PKI / "client_sign.crt.pem"),
            "--sign-key",
            str(tmp / "client_sign.key.plain.pem"),
            "--enc-cert",
            str(PKI / "client_enc.crt.pem"),
            "--enc-key",
            str(tmp / "client_enc.key.plain.pem"),
            "--suite",
            "ECDHE_SM4_CBC_SM3",
        )
    finally:
        await asyncio.wait_for(server, 20)
        listener.close()
        shutil.rmtree(tmp)
    assert code == 0, out
    assert "ECDHE_SM4_CBC_SM3" in out
    assert "client certificate sent: sign + enc; CertificateVerify over SM3 of the handshake (sm3)" in out
    # a Tongsuo server verifying clients without a session id context issues an id but never resumes it
    assert "resumption: no (session id issued, but the second handshake was a full one)" in out


async def test_probe_reports_the_alert_for_an_untrusted_platform(tmp_path: Path) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    other_ca = OTHER_CA

    def serve_expecting_failure() -> None:
        with contextlib.suppress(TongsuoError):  # the handshake is meant to fail on the server too
            run_server(listener, ECC_SM4_GCM_SM3.code, 0)

    server = asyncio.create_task(asyncio.to_thread(serve_expecting_failure))
    try:
        code, out = await ybgate("probe", f"127.0.0.1:{port}", "--ca", str(other_ca))
    finally:
        await asyncio.wait_for(server, 20)
        listener.close()
    assert code == 1
    assert "FAILED: TLCP alert" in out and "not a trusted CA" in out


async def test_probe_unreachable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code, out = await ybgate("probe", f"127.0.0.1:{port}")
    assert code == 1 and "cannot connect" in out


async def test_probe_does_not_claim_a_certificate_the_server_never_asked_for() -> None:
    # the old probe printed "client certificate sent: yes" whenever certificates were given
    from gateway.probe import ProbeOptions, probe

    from .peers import credentials

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    server = asyncio.create_task(asyncio.to_thread(run_server, listener, ECC_SM4_GCM_SM3.code, 0, connections=2))
    try:
        code, lines = await probe(
            ProbeOptions("127.0.0.1", port, ca=PKI / "ca.crt.pem", credentials=credentials("client"), timeout=10)
        )
    finally:
        await asyncio.wait_for(server, 20)
        listener.close()
    assert code == 0, lines
    assert "  client certificate: not asked for (ours not sent)" in lines
    assert not any("client certificate sent" in line for line in lines)
