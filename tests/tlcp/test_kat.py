"""The six recorded sessions between Tongsuo and GmSSL, decoded and checked with our codecs."""

from __future__ import annotations

import pytest

from gateway.crypto import CryptoError, sm3
from gateway.tlcp import keyschedule
from gateway.tlcp.client import ske_ecc_payload
from gateway.tlcp.key_exchange import (
    ClientKeyExchangeECC,
    ClientKeyExchangeECDHE,
    ServerKeyExchangeECC,
    ServerKeyExchangeECDHE,
)
from gateway.tlcp.messages import (
    CertificateMessage,
    CertificateRequest,
    CertificateVerify,
    ClientHello,
    Finished,
    HandshakeType,
    NewSessionTicket,
    ServerHello,
    ServerHelloDone,
    encode_handshake,
)
from gateway.tlcp.suites import KeyExchange

from .kat import KAT_NAMES, Kat, replay
from .peers import cert, key

WITH_KEYLOG = [n for n in KAT_NAMES if Kat.load(n).keylog_master is not None]


def decode(kat: Kat, msg_type: HandshakeType, body: bytes) -> object:
    ecdhe = kat.suite.key_exchange is KeyExchange.ECDHE
    table = {
        HandshakeType.client_hello: ClientHello,
        HandshakeType.server_hello: ServerHello,
        HandshakeType.certificate: CertificateMessage,
        HandshakeType.server_key_exchange: ServerKeyExchangeECDHE if ecdhe else ServerKeyExchangeECC,
        HandshakeType.certificate_request: CertificateRequest,
        HandshakeType.server_hello_done: ServerHelloDone,
        HandshakeType.client_key_exchange: ClientKeyExchangeECDHE if ecdhe else ClientKeyExchangeECC,
        HandshakeType.certificate_verify: CertificateVerify,
        HandshakeType.finished: Finished,
        HandshakeType.new_session_ticket: NewSessionTicket,
    }
    return table[msg_type].decode(body)


def test_all_six_transcripts_present() -> None:
    assert len(KAT_NAMES) == 6


@pytest.mark.parametrize("name", KAT_NAMES)
def test_plaintext_handshake_records_decode_and_round_trip(name: str) -> None:
    """Every message before CCS decodes, and re-encodes to the very same bytes."""
    kat = Kat.load(name)
    rep = replay(kat, bytes.fromhex(kat.meta["master_secret_verified"]))
    assert rep.records == len(kat.records)
    seen = []
    for _direction, raw in rep.handshake:
        msg = decode(kat, raw.msg_type, raw.body)
        assert encode_handshake(raw.msg_type, msg.encode()) == raw.raw, raw.msg_type  # type: ignore[attr-defined]
        seen.append(raw.msg_type.name)
    expected = [t for rec in kat.records for t in rec.get("hs_types") or [] if t != "(encrypted)"]
    # the encrypted ones are the two Finished messages
    assert [s for s in seen if s != "finished"] == expected
    assert seen.count("finished") == 2


@pytest.mark.parametrize("name", KAT_NAMES)
def test_finished_macs_and_plaintexts(name: str) -> None:
    kat = Kat.load(name)
    master = bytes.fromhex(kat.meta["master_secret_verified"])
    if kat.keylog_master is not None:
        assert kat.keylog_master == master
    rep = replay(kat, master)  # every record MAC / GCM tag is checked on the way
    transcript = b""
    finished = 0
    for direction, raw in rep.handshake:
        if raw.msg_type is HandshakeType.finished:
            client = direction == "c2s"
            expected = keyschedule.verify_data(master, client=client, handshake_hash=sm3(transcript))
            assert Finished.decode(raw.body).verify_data == expected
            finished += 1
        transcript += raw.raw
    assert finished == 2
    assert rep.app_data["c2s"] == bytes.fromhex(kat.meta["plaintext_c2s_hex"])
    assert rep.app_data["s2c"] == bytes.fromhex(kat.meta["plaintext_s2c_hex"])
    # close_notify: encrypted warning, or GmSSL 3.1.1's clear fatal one
    assert rep.alerts and all(frag[1] == 0 for _d, frag, _clear in rep.alerts)
    if name.startswith("gmssl311"):
        assert all(clear and frag == b"\x02\x00" for _d, frag, clear in rep.alerts)


def _messages(kat: Kat) -> dict[HandshakeType, list[bytes]]:
    rep = replay(kat, bytes.fromhex(kat.meta["master_secret_verified"]))
    out: dict[HandshakeType, list[bytes]] = {}
    for _d, raw in rep.handshake:
        out.setdefault(raw.msg_type, []).append(raw.body)
    return out


def _transcript_before(kat: Kat, msg_type: HandshakeType) -> bytes:
    rep = replay(kat, bytes.fromhex(kat.meta["master_secret_verified"]))
    transcript = b""
    for _d, raw in rep.handshake:
        if raw.msg_type is msg_type:
            return transcript
        transcript += raw.raw
    raise AssertionError(msg_type)


@pytest.mark.parametrize("name", KAT_NAMES)
def test_server_key_exchange_signature(name: str) -> None:
    kat = Kat.load(name)
    msgs = _messages(kat)
    server_certs = CertificateMessage.decode(msgs[HandshakeType.certificate][0]).certificates
    assert server_certs[0] == cert("server_sign").der and server_certs[1] == cert("server_enc").der
    body = msgs[HandshakeType.server_key_exchange][0]
    if kat.suite.key_exchange is KeyExchange.ECC:
        ske = ServerKeyExchangeECC.decode(body)
        payload = ske_ecc_payload(kat.client_random, kat.server_random, server_certs[1])
        signature = ske.signature
    else:
        ecdhe = ServerKeyExchangeECDHE.decode(body)
        payload = kat.client_random + kat.server_random + ecdhe.params
        signature = ecdhe.signature
    cert("server_sign").public_key.verify(signature, payload)
    with pytest.raises(CryptoError):
        cert("server_sign").public_key.verify(signature, payload[::-1])


MUTUAL = [n for n in KAT_NAMES if "mutual" in n]


@pytest.mark.parametrize("name", MUTUAL)
def test_certificate_verify_signature_and_form(name: str) -> None:
    kat = Kat.load(name)
    msgs = _messages(kat)
    client_certs = CertificateMessage.decode(msgs[HandshakeType.certificate][1]).certificates
    assert client_certs[0] == cert("client_sign").der
    # Tongsuo sends [sign, enc]; GmSSL [sign]
    assert len(client_certs) == (1 if name.startswith("gmssl") else 2)
    signature = CertificateVerify.decode(msgs[HandshakeType.certificate_verify][0]).signature
    transcript = _transcript_before(kat, HandshakeType.certificate_verify)
    public = cert("client_sign").public_key
    if name.startswith("gmssl320"):
        public.verify(signature, transcript)  # GmSSL 3.2.0 signs the raw messages
        with pytest.raises(CryptoError):
            public.verify(signature, sm3(transcript))
    else:
        public.verify(signature, sm3(transcript))
        with pytest.raises(CryptoError):
            public.verify(signature, transcript)


ECC_KATS = [n for n in KAT_NAMES if not n.startswith("ecdhe")]


@pytest.mark.parametrize("name", ECC_KATS)
def test_pre_master_decrypts_to_the_master_secret(name: str) -> None:
    kat = Kat.load(name)
    cke = ClientKeyExchangeECC.decode(_messages(kat)[HandshakeType.client_key_exchange][0])
    pre_master = key("server_enc").decrypt(cke.encrypted_pre_master)
    assert len(pre_master) == 48 and pre_master[:2] == b"\x01\x01"
    master = keyschedule.master_secret(pre_master, kat.client_random, kat.server_random)
    assert master.hex() == kat.meta["master_secret_verified"]


def test_ecdhe_client_point_carries_ec_parameters() -> None:
    kat = Kat.load("ecdhe_sm4_cbc_sm3_mutual")
    cke = ClientKeyExchangeECDHE.decode(_messages(kat)[HandshakeType.client_key_exchange][0])
    assert cke.with_params and len(cke.point) == 65
    bare = ClientKeyExchangeECDHE(cke.point, with_params=False)
    assert ClientKeyExchangeECDHE.decode(bare.encode()) == bare


def test_gmssl_client_hello_has_sni_and_tongsuo_offers_scsv() -> None:
    gm = ClientHello.decode(_messages(Kat.load("gmssl_client_ecc_sm4_gcm_sm3"))[HandshakeType.client_hello][0])
    assert gm.server_name == "localhost"
    ts = ClientHello.decode(_messages(Kat.load("ecc_sm4_gcm_sm3_mutual"))[HandshakeType.client_hello][0])
    assert 0x00FF in ts.cipher_suites and ts.server_name is None
