"""The six recorded sessions between Tongsuo and GmSSL, decoded and checked with our codecs."""

from __future__ import annotations

import pytest

from gateway.crypto import sm3
from gateway.tlcp import keyschedule
from gateway.tlcp.messages import (
    CertificateMessage,
    CertificateRequest,
    CertificateVerify,
    ClientHello,
    ClientKeyExchangeECC,
    ClientKeyExchangeECDHE,
    Finished,
    HandshakeType,
    NewSessionTicket,
    ServerHello,
    ServerHelloDone,
    ServerKeyExchangeECC,
    ServerKeyExchangeECDHE,
    encode_handshake,
)
from gateway.tlcp.suites import KeyExchange

from .kat import KAT_NAMES, Kat, replay

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
