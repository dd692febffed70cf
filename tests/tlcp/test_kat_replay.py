"""The recorded GmSSL 3.1.1 and 3.2.0 mutual-auth sessions replayed through our client and our server.

Each side is fed the other side's recorded bytes and must answer with what the recorded peer answered. SM2
signatures and encryption are randomized, so the few values that cannot be reproduced are taken from the
recording — each only after checking that it verifies (or decrypts) against exactly what our side computed:
the client's CertificateVerify signature, its encrypted pre-master, the server's ServerKeyExchange signature.
Everything else is ours: the ClientHello and the client Certificate (the shape, chosen from GmSSL's
CertificateRequest), the CertificateVerify payload (SM3 for 3.1.1, raw for 3.2.0), the server's flight, both
Finished messages, the record protection and the alerts. A difference in any of them breaks the Finished check.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable

import pytest

from gateway.net.tlcp_transport import ca_names
from gateway.tlcp import keyschedule
from gateway.tlcp.client import ClientConnection
from gateway.tlcp.config import CertVerifyForm, ClientCertShape
from gateway.tlcp.events import AlertReceived, ApplicationData, CloseNotify, Event, HandshakeComplete
from gateway.tlcp.key_exchange import (
    ClientKeyExchangeECC,
    ServerKeyExchangeECC,
)
from gateway.tlcp.messages import (
    CertificateRequest,
    CertificateVerify,
    HandshakeReader,
    HandshakeType,
)
from gateway.tlcp.record import ContentType, RecordLayer, protection_for
from gateway.tlcp.server import ServerConnection

from .kat import Kat, replay
from .peers import CA, SERVER, cert, client_with_certs, key

H = HandshakeType
GMSSL = {"gmssl311_mutual_ecc_sm4_cbc_sm3": CertVerifyForm.SM3, "gmssl320_mutual_ecc_sm4_gcm_sm3": CertVerifyForm.RAW}


@dataclasses.dataclass
class Recorded:
    kat: Kat
    master: bytes
    pre_master: bytes
    messages: dict[tuple[str, HandshakeType], bytes]  # (direction, type) -> body
    app_data: dict[str, bytes]

    @classmethod
    def load(cls, name: str) -> Recorded:
        kat = Kat.load(name)
        master = bytes.fromhex(kat.meta["master_secret_verified"])
        rep = replay(kat, master)
        messages = {(d, m.msg_type): m.body for d, m in rep.handshake}
        cke = ClientKeyExchangeECC.decode(messages["c2s", H.client_key_exchange])
        pre_master = key("server_enc").decrypt(cke.encrypted_pre_master)
        return cls(kat, master, pre_master, messages, rep.app_data)

    def records(self, direction: str) -> list[bytes]:
        return [self.kat.raw_record(r) for r in self.kat.records if r["dir"] == direction]

    def plain_records(self, direction: str) -> bytes:
        """The recorded records in ``direction`` before its ChangeCipherSpec, as raw bytes."""
        out = b""
        for raw in self.records(direction):
            if raw[0] == ContentType.change_cipher_spec:
                return out
            out += raw
        raise AssertionError("no ChangeCipherSpec")


def scripted(*values: bytes) -> Callable[[int], bytes]:
    """A random source that hands out the recorded values first (checking their length), then real randomness."""
    queue = list(values)

    def take(n: int) -> bytes:
        if queue:
            value = queue.pop(0)
            assert len(value) == n
            return value
        return os.urandom(n)

    return take


def feed(conn: ClientConnection | ServerConnection, records: list[bytes]) -> list[Event]:
    events: list[Event] = []
    for raw in records:
        events += conn.receive_data(raw)
    return events


def protected_handshake(rec: Recorded, data: bytes, *, client: bool) -> list[tuple[HandshakeType, bytes]]:
    """Our own output after its ChangeCipherSpec, opened with the recorded session's keys."""
    kb = keyschedule.key_block(rec.kat.suite, rec.master, rec.kat.client_random, rec.kat.server_random)
    layer = RecordLayer()
    layer.feed(data)
    reader = HandshakeReader()
    out = []
    while (record := layer.next_record()) is not None:
        if record.content_type is ContentType.change_cipher_spec:
            layer.set_read_protection(protection_for(rec.kat.suite, kb.client if client else kb.server))
        elif record.content_type is ContentType.handshake and layer._read_protected:
            reader.feed(record.fragment)
            while (msg := reader.next_message()) is not None:
                out.append((msg.msg_type, msg.body))
    return out


@pytest.mark.parametrize("name", sorted(GMSSL))
def test_our_client_replays_the_gmssl_client(name: str) -> None:
    rec = Recorded.load(name)
    recorded_cv = CertificateVerify.decode(rec.messages["c2s", H.certificate_verify]).signature
    recorded_cke = ClientKeyExchangeECC.decode(rec.messages["c2s", H.client_key_exchange]).encrypted_pre_master
    signed: list[bytes] = []

    class ReplayClient(ClientConnection):
        def _encrypt_pre_master(self, server_enc, pre_master):
            assert server_enc == cert("server_enc").public_key and pre_master == rec.pre_master
            return recorded_cke

        def _sign(self, sign_key, data):
            # GmSSL's signature must verify over what we would have signed: the same payload in the same form
            cert("client_sign").public_key.verify(recorded_cv, data)
            signed.append(data)
            return recorded_cv

    config = client_with_certs(cipher_suites=(rec.kat.suite,), cert_verify_form=GMSSL[name])
    client = ReplayClient(config, random=scripted(rec.kat.client_random, rec.pre_master[2:]))
    client.start()
    s2c = rec.records("s2c")
    feed(client, s2c[:5])  # ServerHello .. ServerHelloDone
    ours = client.data_to_send()
    # ClientHello, Certificate ([sign] only, from GmSSL's request), ClientKeyExchange, CertificateVerify: the bytes
    assert ours.startswith(rec.plain_records("c2s"))
    assert client.client_auth.shape is ClientCertShape.SIGN_ONLY and client.client_auth.form is GMSSL[name]
    assert len(signed) == 1
    # our Finished is GmSSL's, and GmSSL's server Finished (over all of the above) checks out
    finished = protected_handshake(rec, ours[len(rec.plain_records("c2s")) :], client=True)
    assert finished == [(H.finished, rec.messages["c2s", H.finished])]
    events = feed(client, s2c[5:7])
    (done,) = [e for e in events if isinstance(e, HandshakeComplete)]
    assert done.cipher_suite == rec.kat.suite and not done.resumed
    events = feed(client, s2c[7:])
    assert b"".join(e.data for e in events if isinstance(e, ApplicationData)) == rec.app_data["s2c"]
    assert isinstance(events[-1], CloseNotify)
    answer = client.data_to_send()
    if name.startswith("gmssl311"):
        # GmSSL 3.1.1 closed in the clear: so do we, or it could not read our answer
        assert client.peer_sends_clear_alerts and answer == bytes([21, 1, 1, 0, 2, 1, 0])
    else:
        assert not client.peer_sends_clear_alerts and len(answer) > 7


@pytest.mark.parametrize("name", sorted(GMSSL))
def test_our_server_replays_the_gmssl_server(name: str) -> None:
    rec = Recorded.load(name)
    recorded_ske = ServerKeyExchangeECC.decode(rec.messages["s2c", H.server_key_exchange]).signature
    recorded_request = CertificateRequest.decode(rec.messages["s2c", H.certificate_request])

    class ReplayServer(ServerConnection):
        def _sign(self, sign_key, data):
            cert("server_sign").public_key.verify(recorded_ske, data)
            return recorded_ske

        def _send_handshake(self, msg_type, body):
            if msg_type is H.certificate_request:
                ours = CertificateRequest.decode(body)
                # the CA list is ours (from the CA bundle, as the daemon builds it) and matches GmSSL's byte for
                # byte; the certificate types differ (we also list rsa_sign, as Tongsuo does) and take GmSSL's
                assert ours.authorities == recorded_request.authorities
                body = recorded_request.encode()
            super()._send_handshake(msg_type, body)

    config = dataclasses.replace(SERVER, require_client_cert=True, client_ca_names=ca_names([CA]))
    server = ReplayServer(config, random=scripted(rec.kat.server_random))
    server.start()
    c2s = rec.records("c2s")
    feed(server, c2s[:1])
    assert server.data_to_send() == rec.plain_records("s2c")  # ServerHello .. ServerHelloDone, byte for byte
    events = feed(server, c2s[1:6])  # Certificate [sign], ClientKeyExchange, CertificateVerify, CCS, Finished
    (done,) = [e for e in events if isinstance(e, HandshakeComplete)]
    assert done.peer_cert_verify_form == GMSSL[name].value
    assert [c.der for c in done.peer_certificates] == [cert("client_sign").der]
    finished = protected_handshake(rec, server.data_to_send(), client=False)
    assert finished == [(H.finished, rec.messages["s2c", H.finished])]
    events = feed(server, c2s[6:])
    assert b"".join(e.data for e in events if isinstance(e, ApplicationData)) == rec.app_data["c2s"]
    assert isinstance(events[-1], CloseNotify) and not any(isinstance(e, AlertReceived) for e in events)
