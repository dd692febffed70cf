"""Certificate rotation on reload: new sign/enc certificates and keys are checked as `certs check` would and
used for new TLCP connections; a bad new set is refused and the running one kept. Real TLCP to the
simulator, which records the client certificate each handshake presented."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from structlog.testing import capture_logs
from test_callback import His, call_with_handshake, callback_config, platform_client

from gateway.app.daemon import Daemon
from gateway.app.demo import demo_config, sim_tlcp_config
from gateway.audit.log import AuditLog, Outcome, audit_files
from gateway.audit.verify import verify
from gateway.crypto import Certificate, SM2PrivateKey
from gateway.crypto.testpki import generate_test_pki, issue_next
from gateway.sim.server import Simulator
from gateway.tlcp import TLCPConfig

from conftest import Gateway, fresh, ybgate_output


def replace_file(path: Path, data: bytes) -> None:
    mode = path.stat().st_mode & 0o777
    path.write_bytes(data)
    path.chmod(mode)


async def tlcp_gateway(tmp: Path, pki: Path, platform: TLCPConfig) -> tuple[Simulator, Gateway]:
    """The simulator as a TLCP platform and a started daemon with the test PKI's client identity."""
    sim = Simulator()
    await sim.start(tlcp=platform)
    assert sim.addresses is not None
    config = demo_config(tmp / "gw", sim.addresses.platform, pki=pki)
    daemon = Daemon(config)
    await daemon.start()
    return sim, Gateway(daemon, config, sim)


async def test_rotation_applies_to_new_connections_and_a_bad_set_is_refused(short_tmp: Path) -> None:
    pki = generate_test_pki(short_tmp / "pki", write_ca_key=True)["ca"].parent
    seen: list[int] = []
    platform = sim_tlcp_config(pki)
    check = platform.verify_peer
    assert check is not None

    def recording(certs: Sequence[Certificate]) -> None:
        seen.append(certs[0].serial)  # the client's sign certificate, as this handshake presented it
        check(certs)

    sim, gw = await tlcp_gateway(short_tmp, pki, type(platform)(**{**platform.__dict__, "verify_peer": recording}))
    daemon = gw.daemon
    try:
        sign_no = await gw.sign_in()
        first = seen[-1]
        original = {n: (pki / n).read_bytes() for n in ("client_sign.crt.pem", "client_sign.key.pem")}

        # A certificate from another CA: refused, the running identity stays and traffic goes on.
        other = generate_test_pki(short_tmp / "other")["ca"].parent
        replace_file(pki / "client_sign.crt.pem", (other / "client_sign.crt.pem").read_bytes())
        replace_file(pki / "client_sign.key.pem", (other / "client_sign.key.pem").read_bytes())
        assert daemon.reload_identity() == "refused"
        assert any(e["kind"] == "identity_refused" for e in daemon.recent.snapshot()["errors"])
        assert daemon.connections is not None
        await daemon.connections.close()  # force a new handshake: it must still use the old identity
        reply = await gw.post(fresh("1101_query_request.json", sign_no=sign_no))
        assert reply.status == 200 and seen[-1] == first

        # A proper renewal from the same CA, with new keys: used by the next new connection.
        for name, data in original.items():
            replace_file(pki / name, data)
        issue_next(pki, "client")
        renewed = Certificate.from_pem((pki / "client_sign.crt.pem").read_bytes()).serial
        assert renewed != first
        assert daemon.reload_identity() == "applied"
        await daemon.connections.close()
        reply = await gw.post(fresh("1101_query_request.json", sign_no=sign_no))
        assert reply.status == 200 and json.loads(reply.body)["infcode"] in (0, "0")
        assert seen[-1] == renewed
    finally:
        await daemon.stop(1)
        await sim.stop()


async def test_rotation_reaches_the_callback_listener(short_tmp: Path) -> None:
    """The listener loaded the identity once, at start: after a rotation it still presented the old certificate.
    Real TLCP handshakes from the platform's side before and after; the PKI from the CLI, as an operator's drill."""
    pki = short_tmp / "pki"
    assert (await ybgate_output("certs", "gen-test-pki", str(pki), "--keep-ca-key"))[0] == 0
    his = His()
    await his.start()
    daemon = Daemon(callback_config(short_tmp, pki, his))
    await daemon.start()
    notice = json.dumps({"infno": "4401", "input": {"data": {"setl_id": "S1"}}}).encode()
    try:
        status, _, before = await call_with_handshake(daemon, platform_client(pki), notice)
        first = Certificate.from_pem((pki / "client_sign.crt.pem").read_bytes()).serial
        assert status == 200 and before.peer_certificates[0].serial == first

        assert (await ybgate_output("certs", "issue", str(pki), "--role", "client"))[0] == 0
        renewed = Certificate.from_pem((pki / "client_sign.crt.pem").read_bytes()).serial
        assert renewed != first
        with capture_logs() as logs:
            assert daemon.reload_identity() == "applied"
        status, _, after = await call_with_handshake(daemon, platform_client(pki), notice)
        assert status == 200 and after.peer_certificates[0].serial == renewed
        enc = Certificate.from_pem((pki / "client_enc.crt.pem").read_bytes()).serial
        assert after.peer_certificates[1].serial == enc
        switched = [e for e in logs if e["event"] == "callback_identity_switched"]
        assert [e["serial"] for e in switched] == [f"{renewed:x}"]
    finally:
        await daemon.stop(1)
        assert his.server is not None
        his.server.close()


async def test_rotation_reaches_the_audit_signer_and_verify_follows_it(short_tmp: Path) -> None:
    """Checkpoints after a rotation were still signed with the old key, so `audit verify --config` (which checks
    with the certificate the config names, the new one) failed on the log. Now the signer switches, the switch
    is a checkpoint naming both certificates and signed by both keys, and verify follows it."""
    pki = short_tmp / "pki"
    assert (await ybgate_output("certs", "gen-test-pki", str(pki), "--keep-ca-key"))[0] == 0
    old_cert = (pki / "client_sign.crt.pem").read_bytes()
    sim, gw = await tlcp_gateway(short_tmp, pki, sim_tlcp_config(pki))
    daemon, config = gw.daemon, gw.config
    try:
        sign_no = await gw.sign_in()
        for _ in range(3):
            assert (await gw.post(fresh("1101_query_request.json", sign_no=sign_no))).status == 200
        assert (await ybgate_output("certs", "issue", str(pki), "--role", "client"))[0] == 0
        with capture_logs() as logs:
            assert daemon.reload_identity() == "applied"
        for _ in range(3):
            assert (await gw.post(fresh("1101_query_request.json", sign_no=sign_no))).status == 200
    finally:
        await daemon.stop(1)
        await sim.stop()
    ident = config.identity
    assert ident is not None
    new_subject = Certificate.from_pem((pki / "client_sign.crt.pem").read_bytes()).subject
    cfg = short_tmp / "ybgate.yaml"
    cfg.write_text(
        f"state_dir: {json.dumps(str(config.state_dir))}\n"
        f"identity: {json.dumps(ident.model_dump(mode='json'))}\n"
        "upstreams: [{name: p, host: 127.0.0.1, port: 9}]\n"
    )
    code, out, err = await ybgate_output("audit", "verify", "--config", str(cfg))
    assert code == 0, err
    assert [e["signer"] for e in logs if e["event"] == "audit_signer_switched"] == [new_subject]
    assert "rotation" in out and "ok: " in out
    files = sorted(config.audit_dir.glob("audit-*.jsonl"))
    entries = [json.loads(line) for f in files for line in f.read_bytes().splitlines()]
    rotations = [e for e in entries if "rotation" in e]
    old_subject = Certificate.from_pem(old_cert).subject
    assert [(e["signer"], e["next_signer"]) for e in rotations] == [(old_subject, new_subject)]
    # outcomes on both sides of it; the last checkpoint (at stop) is the new key's
    at = entries.index(rotations[0])
    assert any(e["kind"] == "outcome" for e in entries[:at]) and any(e["kind"] == "outcome" for e in entries[at:])
    assert entries[-1]["kind"] == "checkpoint" and entries[-1]["signer"] == new_subject
    # the old certificate vouches for the log too (it signed the hand-over); one of another CA does not
    (short_tmp / "old.pem").write_bytes(old_cert)
    assert (await ybgate_output("audit", "verify", *map(str, files), "--cert", str(short_tmp / "old.pem")))[0] == 0
    other = generate_test_pki(short_tmp / "other")["ca"].parent
    code, _, err = await ybgate_output(
        "audit", "verify", *map(str, files), "--cert", str(other / "client_sign.crt.pem")
    )
    assert code == 1 and "signed none of this log's checkpoints" in err


async def test_a_rotation_to_a_certificate_not_from_the_ca_is_a_break(short_tmp: Path) -> None:
    """Whoever holds the old key could hand the chain to a certificate of their own: the hand-over is checked
    against the CA the identity trusts."""
    pki = generate_test_pki(short_tmp / "pki")["ca"].parent
    other = generate_test_pki(short_tmp / "other")["ca"].parent

    def pair(d: Path) -> tuple[SM2PrivateKey, Certificate]:
        key = SM2PrivateKey.from_pem((d / "client_sign.key.pem").read_bytes())
        return key, Certificate.from_pem((d / "client_sign.crt.pem").read_bytes())

    key, cert = pair(pki)
    rogue_key, rogue = pair(other)
    roots = Certificate.load_pem_chain((pki / "ca.crt.pem").read_bytes())
    log = AuditLog(short_tmp / "audit", signer=key, signer_subject=cert.subject, signer_chain=[cert])
    log.open()
    outcome = Outcome("m1", "1101", "answered", "ok", "p", b"\0" * 32, b"{}", 1.0)
    log.record([outcome])
    assert log.rotate_signer(rogue_key, [rogue])
    log.record([replace(outcome, msgid="m2")])
    await log.close()
    files = audit_files(short_tmp / "audit")
    report = verify(files, cert.public_key, roots=roots)
    assert not report.ok and "the CA does not vouch for" in (report.problem or "")
    # without the CA the hand-over itself still verifies, and the verifier says what it could not check
    unchecked = verify(files, cert.public_key)
    assert unchecked.ok and any("not checked against a CA" in n for n in unchecked.notes)
