"""Each profile end to end: HIS → gateway (real Unix socket, real outbox) → simulator enforcing the same
profile over real TCP, and back. What crossed the wire is checked with OpenSSL and gmssl, not with our code."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import structlog
from profilekit import APP_ID, PAASID, SM4_HEX, TIF_SECRET, gmssl_verifies, openssl, openssl_verifies, write_private

from gateway.app.daemon import Daemon
from gateway.app.demo import DEMO_CONFIG, TLCP_PART, demo_policy, sim_tlcp_config
from gateway.config import Config, load_config_text
from gateway.crypto import SM2PrivateKey
from gateway.crypto.sm2 import raw_to_der_signature
from gateway.crypto.testpki import generate_test_pki
from gateway.platform.profile import bundled_profile
from gateway.platform.signing import ProfileCodec, ProfileKeys, sorted_kv
from gateway.sim.ledger import Ledger
from gateway.sim.platform import SimPlatform
from gateway.sim.server import Simulator

from conftest import Gateway, fresh


@dataclass
class Material:
    """A throwaway PKI and secret files: the hospital signs with client_sign, the platform with server_sign."""

    dir: Path
    hospital: SM2PrivateKey
    platform: SM2PrivateKey
    files: dict[str, Path]

    def platform_keys(self, **over: Any) -> ProfileKeys:
        base = {
            "paasid": PAASID,
            "tif_secret": TIF_SECRET,
            "app_id": APP_ID,
            "sm4_key": bytes.fromhex(SM4_HEX),
            "own_key": self.platform,
            "peer_key": self.hospital.public_key(),
        }
        return ProfileKeys(**(base | over))


@pytest.fixture
def material(short_tmp: Path) -> Material:
    files = generate_test_pki(short_tmp / "pki")
    secrets = short_tmp / "secrets"
    secrets.mkdir(mode=0o700)
    files["tif_secret"] = write_private(secrets / "tif_secret", TIF_SECRET.encode() + b"\n")
    files["sm4_key"] = write_private(secrets / "sm4_key", SM4_HEX.encode() + b"\n")
    return Material(
        short_tmp,
        SM2PrivateKey.from_pem(files["client_sign.key"].read_bytes()),
        SM2PrivateKey.from_pem(files["server_sign.key"].read_bytes()),
        files,
    )


def upstream_lines(profile: str, m: Material, **secrets: Path) -> str:
    lines = [f"    profile: {profile}", f"    paasid: {PAASID}", f"    app_id: {APP_ID}"]
    if secrets:
        lines.append("    secrets:")
        lines += [f"      {k}: {v}" for k, v in secrets.items()]
    return "\n".join(lines) + "\n"


def profile_config(state: Path, sim: Simulator, extra: str) -> Config:
    assert sim.addresses is not None
    host, port = sim.addresses.platform
    text = DEMO_CONFIG.format(state=state, host=host, port=port, level="warning")
    return load_config_text(text.replace("    transport: tcp\n", "    transport: tcp\n" + extra), "<profile test>")


def secrets_for(profile: str, m: Material) -> dict[str, Path]:
    f = m.files
    return {
        "plain": {},
        "tif": {"tif_secret": f["tif_secret"]},
        "sm2sm4": {"sm4_key": f["sm4_key"], "sign_key": f["client_sign.key"], "platform_cert": f["server_sign.crt"]},
        "gbk": {"tif_secret": f["tif_secret"], "sign_key": f["client_sign.key"], "platform_cert": f["server_sign.crt"]},
    }[profile]


@dataclass
class Rig:
    gateway: Gateway
    sim: Simulator
    clock_offset: list[float]


@pytest_asyncio.fixture
async def rig(request: pytest.FixtureRequest, material: Material) -> AsyncIterator[Rig]:
    """A simulator enforcing the profile named by the test's parameter, and a gateway configured for it."""
    name = request.param
    offset = [0.0]
    platform = SimPlatform(Ledger(), clock=lambda: time.time() + offset[0])
    sim = Simulator(platform, profile=ProfileCodec(bundled_profile(name), material.platform_keys(), platform=True))
    await sim.start()
    config = profile_config(material.dir / "gw", sim, upstream_lines(name, material, **secrets_for(name, material)))
    daemon = Daemon(config)
    await daemon.start()
    yield Rig(Gateway(daemon, config, sim), sim, offset)
    await daemon.stop(grace=1.0)
    await sim.stop()


async def post(gw: Gateway, doc: dict[str, Any], **kw: Any) -> dict[str, Any]:
    reply = await gw.post(doc, **kw)
    assert reply.status == 200, reply.body
    return json.loads(reply.body)


async def session(gw: Gateway) -> tuple[str, dict[str, Any]]:
    """Sign in, then settle: what a cashier does; returns sign_no and the settlement answer."""
    signin = await post(gw, fresh("9001_signin_request.json"))
    assert int(signin["infcode"]) == 0, signin
    sign_no = signin["output"]["signinoutb"]["sign_no"]
    person = await post(gw, fresh("1101_query_request.json", sign_no=sign_no))
    assert int(person["infcode"]) == 0, person
    settle = await post(gw, fresh("2207_settle_request.json", sign_no=sign_no))
    return sign_no, settle


def assert_settled_once(rig: Rig, settle: dict[str, Any]) -> None:
    assert int(settle["infcode"]) == 0, settle
    assert settle["output"]["setlinfo"]["setl_id"]  # the HIS sees plain output, whatever crossed the wire
    assert len(rig.sim.ledger.settlements) == 1


# -- the three profiles the issue asks for, and GBK ------------------------------------------------------------


@pytest.mark.parametrize("rig", ["plain"], indirect=True)
async def test_plain_profile_end_to_end(rig: Rig) -> None:
    _, settle = await session(rig.gateway)
    assert_settled_once(rig, settle)
    path, headers, body = rig.sim.wire[-1]
    assert path == "/fsi/api/rsfComIfsService/callService" and "x-tif-signature" not in headers
    assert json.loads(body)["input"]["data"]["psn_no"]  # in clear, as the HIS sent it


@pytest.mark.parametrize("rig", ["tif"], indirect=True)
async def test_tif_profile_end_to_end(rig: Rig) -> None:
    _, settle = await session(rig.gateway)
    assert_settled_once(rig, settle)
    nonces = set()
    for path, headers, _ in rig.sim.wire:
        assert path.startswith("/ebus/fsi/api/hsa/hgs/")  # the profile's per-transaction path
        assert headers["x-tif-paasid"] == PAASID
        stamp, nonce = headers["x-tif-timestamp"], headers["x-tif-nonce"]
        assert abs(int(stamp) - time.time()) < 30
        # The signature, recomputed by OpenSSL from the rule: sha256(timestamp + secret + nonce + timestamp).
        digest = openssl("dgst", "-sha256", "-r", data=(stamp + TIF_SECRET + nonce + stamp).encode())
        assert headers["x-tif-signature"] == digest.stdout.split()[0].decode()
        nonces.add(nonce)
    assert len(nonces) == len(rig.sim.wire)  # fresh per send
    assert [p.rsplit("/", 1)[1] for p, _, _ in rig.sim.wire] == ["9001", "1101", "2207"]


@pytest.mark.parametrize("rig", ["tif"], indirect=True)
async def test_tif_stale_clock_is_refused_and_skew_warned(rig: Rig) -> None:
    gw = rig.gateway
    rig.clock_offset[0] = 90.0  # the platform's clock runs 90 s ahead: accepted, but ops are warned
    with structlog.testing.capture_logs() as logs:
        signin = await post(gw, fresh("9001_signin_request.json"))
    assert int(signin["infcode"]) == 0
    warned = [e for e in logs if e["event"] == "platform_clock_skew"]
    assert warned and 85 <= warned[0]["skew_s"] <= 95
    metrics = gw.daemon.metrics.render().decode()
    line = next(
        ln for ln in metrics.splitlines() if ln.startswith('ybgate_platform_clock_skew_seconds{upstream="sim"}')
    )
    assert 85 <= float(line.split()[-1]) <= 95
    rig.clock_offset[0] = 300.0  # beyond ±180 s: the platform refuses, and the HIS is told why
    refused = await post(gw, fresh("9001_signin_request.json"))
    assert int(refused["infcode"]) == -1 and "x-tif-timestamp 已过期" in refused["err_msg"]
    assert not refused.get("output")


@pytest.mark.parametrize("rig", ["sm2sm4"], indirect=True)
async def test_sm2sm4_profile_end_to_end(rig: Rig, material: Material) -> None:
    _, settle = await session(rig.gateway)
    assert_settled_once(rig, settle)
    hospital_pub = material.dir / "hospital.pub.pem"
    out = openssl("x509", "-in", str(material.files["client_sign.crt"]), "-pubkey", "-noout")
    hospital_pub.write_bytes(out.stdout)
    for _, headers, body in rig.sim.wire:
        sent = json.loads(body)
        assert sent["enc_type"] == "SM4" and sent["app_id"] == APP_ID and sent["signtype"] == "SM2"
        assert isinstance(sent["input"], str)
        # Decrypted by OpenSSL, signature verified by OpenSSL (ID 1234567812345678) and by gmssl.
        dec = openssl("enc", "-d", "-sm4-ecb", "-K", SM4_HEX, "-nosalt", data=base64.b64decode(sent["input"]))
        assert dec.returncode == 0 and json.loads(dec.stdout)
        raw = base64.b64decode(sent["cainfo"])
        assert openssl_verifies(hospital_pub, raw_to_der_signature(raw), dec.stdout, material.dir)
        assert gmssl_verifies(material.hospital.public_key().point, raw, dec.stdout)
        assert "x-tif-signature" not in headers


@pytest.mark.parametrize("rig", ["gbk"], indirect=True)
async def test_gbk_profile_end_to_end_both_his_charsets(rig: Rig, material: Material) -> None:
    gw = rig.gateway
    _, settle = await session(gw)
    assert_settled_once(rig, settle)
    _, headers, body = rig.sim.wire[-1]
    assert headers["content-type"].endswith("charset=GBK")
    sent = json.loads(body.decode("gbk"))
    assert sent["opter_name"] == "张三"
    hospital_pub = material.dir / "hospital.pub.pem"
    hospital_pub.write_bytes(openssl("x509", "-in", str(material.files["client_sign.crt"]), "-pubkey", "-noout").stdout)
    assert openssl_verifies(hospital_pub, base64.b64decode(sent["cainfo"]), sorted_kv(sent["input"]), material.dir)
    # A HIS that speaks GBK itself gets its answer in GBK.
    sign_no = (await post(gw, fresh("9001_signin_request.json")))["output"]["signinoutb"]["sign_no"]
    doc = fresh("1101_query_request.json", sign_no=sign_no)
    reply = await gw.post(
        json.dumps(doc, ensure_ascii=False).encode("gbk"), headers=[("Content-Type", "application/json;charset=GBK")]
    )
    answer = json.loads(reply.body.decode("gbk"))
    assert int(answer["infcode"]) == 0 and answer["output"]["baseinfo"]["psn_no"]
    # A name GBK cannot write is refused before anything is sent, and said so.
    before = len(rig.sim.wire)
    reply = await gw.post(fresh("1101_query_request.json", sign_no=sign_no, opter_name="𠀀先生"))
    rare = json.loads(reply.body)
    # no policy client: the default platform-shaped answer, the kind in the body and a header
    assert reply.status == 200 and rare["gateway_error"] == "not_processed"
    assert reply.headers.get("x-ybgate-error") == "not_processed"
    assert int(rare["infcode"]) == -1 and "no GBK encoding" in rare["err_msg"]
    assert len(rig.sim.wire) == before


@pytest.mark.parametrize("rig", ["tif", "sm2sm4", "gbk"], indirect=True)
async def test_lost_settlement_answer_is_reversed_through_the_profile(rig: Rig) -> None:
    """Exactly-once under a profile: the answer to a settlement is lost, the gateway's 冲正 (2601) goes out
    signed/encrypted/stamped like any request, the platform accepts it, and the settlement is undone once."""
    gw = rig.gateway
    sign_no = (await post(gw, fresh("9001_signin_request.json")))["output"]["signinoutb"]["sign_no"]
    rig.sim.faults.set("2207", {"kind": "drop_after", "times": 1})
    settle = fresh("2207_settle_request.json", sign_no=sign_no)
    reply = await gw.post(settle)
    assert json.loads(reply.body)["gateway_error"] == "reversed"
    assert [s.state for s in rig.sim.ledger.by_msgid(settle["msgid"])] == ["reversed"]
    assert not any(m.fault == "profile_refused" for m in rig.sim.ledger.messages)
    assert [m.infno for m in rig.sim.ledger.messages if m.infno in ("2207", "2601")] == ["2207", "2601"]


async def test_sm2sm4_over_mutual_tlcp(material: Material) -> None:
    """As on a 前置机: TLCP with the hospital's sign/enc certificates, and inside it the message-level profile,
    with cainfo signed by the same sign key the TLCP identity uses."""
    pki = material.files["ca"].parent
    sim = Simulator(profile=ProfileCodec(bundled_profile("sm2sm4"), material.platform_keys(), platform=True))
    await sim.start(tlcp=sim_tlcp_config(pki))
    assert sim.addresses is not None
    host, port = sim.addresses.platform
    text = DEMO_CONFIG.format(state=material.dir / "gw", host=host, port=port, level="warning")
    text = "\n".join(line for line in text.splitlines() if not line.startswith("development:")) + "\n"
    extra = upstream_lines("sm2sm4", material, **secrets_for("sm2sm4", material))
    text = text.replace("    transport: tcp\n", "    transport: tlcp\n" + extra) + TLCP_PART.format(pki=pki)
    text += demo_policy(material.dir / "gw", (host, port))
    config = load_config_text(text, "<tlcp profile test>")
    daemon = Daemon(config)
    await daemon.start()
    try:
        rig = Rig(Gateway(daemon, config, sim), sim, [0.0])
        _, settle = await session(rig.gateway)
        assert_settled_once(rig, settle)
        assert all(isinstance(json.loads(body)["input"], str) for _, _, body in sim.wire)
    finally:
        await daemon.stop(grace=1.0)
        await sim.stop()


# -- what goes wrong -------------------------------------------------------------------------------------------


async def test_platform_refuses_a_hospital_key_it_does_not_know(material: Material, short_tmp: Path) -> None:
    """The platform holds another hospital certificate: it refuses with its own error, definitively, and the
    HIS is told; nothing is booked."""
    keys = material.platform_keys(peer_key=SM2PrivateKey.generate().public_key())
    sim = Simulator(profile=ProfileCodec(bundled_profile("sm2sm4"), keys, platform=True))
    await sim.start()
    config = profile_config(
        short_tmp / "gw", sim, upstream_lines("sm2sm4", material, **secrets_for("sm2sm4", material))
    )
    daemon = Daemon(config)
    await daemon.start()
    try:
        gw = Gateway(daemon, config, sim)
        answer = await post(gw, fresh("9001_signin_request.json"))
        assert int(answer["infcode"]) == -1 and answer["err_msg"] == "报文签名验证失败"
        assert sim.ledger.messages[-1].fault == "profile_refused"
    finally:
        await daemon.stop(grace=1.0)
        await sim.stop()


async def test_answer_signed_by_someone_else_is_not_believed(material: Material, short_tmp: Path) -> None:
    """An answer whose signature does not verify is not passed on as the platform's: the outcome is unknown."""
    keys = material.platform_keys(own_key=SM2PrivateKey.generate())
    sim = Simulator(profile=ProfileCodec(bundled_profile("sm2sm4"), keys, platform=True))
    await sim.start()
    config = profile_config(
        short_tmp / "gw", sim, upstream_lines("sm2sm4", material, **secrets_for("sm2sm4", material))
    )
    config = config.model_copy(update={"api": config.api.model_copy(update={"default_timeout": 2.0})})
    daemon = Daemon(config)
    await daemon.start()
    try:
        gw = Gateway(daemon, config, sim)
        with structlog.testing.capture_logs() as logs:
            reply = await gw.post(fresh("9001_signin_request.json"))
        answer = json.loads(reply.body)
        # Never the platform's (forged) success: a gateway error the HIS's error path shows.
        assert reply.status == 200 and int(answer["infcode"]) == -1  # no policy client: platform-shaped
        assert answer["gateway_error"] in ("not_processed", "outcome_unknown")
        assert answer["output"] is None and sim.platform.signins  # the platform did answer; we did not believe it
        assert any(e["event"] == "untrusted_answer" and "does not verify" in e["reason"] for e in logs)
    finally:
        await daemon.stop(grace=1.0)
        await sim.stop()


async def test_sim_refuses_a_replayed_tif_nonce(material: Material) -> None:
    import asyncio

    from gateway.http1.client import encode_request, exchange

    sim = Simulator(profile=ProfileCodec(bundled_profile("tif"), material.platform_keys(), platform=True))
    await sim.start()
    try:
        gw_codec = ProfileCodec(bundled_profile("tif"), ProfileKeys(paasid=PAASID, tif_secret=TIF_SECRET))
        from gateway.platform.envelope import decode_request

        env = decode_request(json.dumps(fresh("9001_signin_request.json"), ensure_ascii=False).encode())
        out = gw_codec.encode_request(env, base_path="/x", now=time.time(), nonce="replayed-nonce-1")
        answers = []
        for _ in range(2):
            assert sim.addresses is not None
            reader, writer = await asyncio.open_connection(*sim.addresses.platform)
            raw = encode_request("POST", "sim", out.path, [*out.headers, ("Connection", "close")], out.body)
            answers.append(json.loads((await exchange(reader, writer, raw)).body))
            writer.close()
        assert int(answers[0]["infcode"]) == 0
        assert int(answers[1]["infcode"]) == -1 and "重放" in answers[1]["err_msg"]
    finally:
        await sim.stop()
