"""Hypothesis: whatever bytes arrive, the parsers and state machines fail only with TLCP alerts."""

from __future__ import annotations

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gateway.tlcp.alerts import TLCPAlert
from gateway.tlcp.client import ClientConnection
from gateway.tlcp.connection import TlcpState
from gateway.tlcp.key_exchange import (
    ClientKeyExchangeECC,
    ClientKeyExchangeECDHE,
    ServerKeyExchangeECC,
    ServerKeyExchangeECDHE,
)
from gateway.tlcp.keyschedule import TrafficKeys
from gateway.tlcp.messages import (
    CertificateMessage,
    CertificateRequest,
    CertificateVerify,
    ClientHello,
    Finished,
    HandshakeReader,
    NewSessionTicket,
    ServerHello,
    ServerHelloDone,
)
from gateway.tlcp.record import CbcProtection, ContentType, GcmProtection, RecordLayer
from gateway.tlcp.server import ServerConnection

from .kat import Kat
from .peers import CLIENT, SERVER
from conftest import fuzz_examples

FUZZ = settings(max_examples=fuzz_examples(300), deadline=None, suppress_health_check=[HealthCheck.too_slow])
DECODERS = [
    ClientHello, ServerHello, CertificateMessage, ServerKeyExchangeECC, ServerKeyExchangeECDHE,
    CertificateRequest, ServerHelloDone, ClientKeyExchangeECC, ClientKeyExchangeECDHE, CertificateVerify,
    Finished, NewSessionTicket,
]  # fmt: skip

RECORDED_C2S = Kat.load("gmssl311_mutual_ecc_sm4_cbc_sm3").streams["c2s"]
RECORDED_S2C = Kat.load("ecc_sm4_gcm_sm3_mutual").streams["s2c"]


@FUZZ
@given(st.sampled_from(DECODERS), st.binary(max_size=300))
def test_message_decoders_raise_only_alerts(decoder, body: bytes) -> None:
    try:
        msg = decoder.decode(body)
    except TLCPAlert:
        return
    assert decoder.decode(msg.encode()) == msg


@FUZZ
@given(st.binary(max_size=600))
def test_record_and_handshake_framing_raise_only_alerts(data: bytes) -> None:
    layer = RecordLayer()
    reader = HandshakeReader()
    layer.feed(data)
    consumed = 0
    try:
        while (rec := layer.next_record()) is not None:
            consumed += 5 + len(rec.fragment)
            reader.feed(rec.fragment)
            while reader.next_message() is not None:
                pass
    except TLCPAlert:
        return
    assert consumed + layer.pending() == len(data)


@FUZZ
@given(st.binary(max_size=200), st.booleans())
def test_record_protections_raise_only_alerts(fragment: bytes, cbc: bool) -> None:
    keys = TrafficKeys(b"m" * 32, b"k" * 16, b"salt" if not cbc else b"i" * 16)
    protection = CbcProtection(keys) if cbc else GcmProtection(keys)
    try:
        protection.open(0, 23, fragment)
    except TLCPAlert:
        return
    raise AssertionError("a random fragment passed the MAC check")


def _last_record_type(out: bytes) -> int:
    pos, last = 0, -1
    while pos < len(out):
        last = out[pos]
        pos += 5 + int.from_bytes(out[pos + 3 : pos + 5], "big")
    assert pos == len(out)
    return last


def _feed(conn, data: bytes) -> None:
    """The bytes are taken, or a local alert is raised, queued for the peer, and the connection closed."""
    try:
        conn.receive_data(data)
    except TLCPAlert as exc:
        assert not exc.remote
        assert conn.state is TlcpState.CLOSED
        out = conn.data_to_send()
        assert (out[0] == ContentType.alert and out[-2:] == bytes([2, exc.description])) or len(out) > 7
    else:
        assert conn.state is not TlcpState.CLOSED or conn.data_to_send()[:1] in (b"", b"\x15")


def _mutate(base: bytes, edits: list[tuple[int, int]], cut: int) -> bytes:
    data = bytearray(base[: max(cut, 1)])
    for pos, value in edits:
        data[pos % len(data)] = value
    return bytes(data)


@FUZZ
@given(st.lists(st.tuples(st.integers(0, 4000), st.integers(0, 255)), max_size=4), st.integers(0, 4000))
def test_server_takes_mutated_client_flights_with_alerts_only(edits, cut) -> None:
    server = ServerConnection(SERVER)
    server.start()
    _feed(server, _mutate(RECORDED_C2S, edits, cut))


@FUZZ
@given(st.lists(st.tuples(st.integers(0, 4000), st.integers(0, 255)), max_size=4), st.integers(0, 4000))
def test_client_takes_mutated_server_flights_with_alerts_only(edits, cut) -> None:
    client = ClientConnection(CLIENT)
    client.start()
    client.data_to_send()
    _feed(client, _mutate(RECORDED_S2C, edits, cut))


@FUZZ
@given(st.binary(max_size=400))
def test_connections_take_random_bytes_with_alerts_only(data: bytes) -> None:
    for conn in (ServerConnection(SERVER), ClientConnection(CLIENT)):
        conn.start()
        conn.data_to_send()
        _feed(conn, data)


def _protections(kind: str) -> tuple[object, object] | None:
    """A (write, read) protection pair sharing one key block, as two peers derive it; None for the clear."""
    if kind == "null":
        return None
    keys = TrafficKeys(b"m" * 32, b"k" * 16, b"salt" if kind == "gcm" else b"i" * 16)
    if kind == "gcm":
        return GcmProtection(keys), GcmProtection(keys)
    return CbcProtection(keys), CbcProtection(keys)


# Sizes around the 2^14 fragment boundary are drawn as one integer and filled with a pattern: the record layer
# does not look at the bytes, and drawing 40 KiB byte by byte would be all the test did.
PATTERN = bytes(i % 251 for i in range(2 * 16_384 + 3))
payloads = st.binary(max_size=64) | st.integers(16_380, len(PATTERN)).map(lambda n: PATTERN[:n])
# Small chunks and large ones; small ones only for small flights, since feeding 32 KiB a byte at a time re-reads
# the pending header 32,000 times and would be all a 10⁵-example run did.
chunks = st.integers(1, 9) | st.integers(1000, 70_000)
record_types = st.sampled_from([ContentType.handshake, ContentType.application_data, ContentType.change_cipher_spec])


@FUZZ
@given(
    st.lists(st.tuples(record_types, payloads), min_size=1, max_size=3),
    st.sampled_from(["null", "cbc", "gcm"]),
    chunks,
)
def test_records_round_trip_through_fragmentation_and_protection(messages, kind: str, chunk: int) -> None:
    writer, reader = RecordLayer(), RecordLayer()
    pair = _protections(kind)
    if pair is not None:
        writer.set_write_protection(pair[0])  # type: ignore[arg-type]
        reader.set_read_protection(pair[1])  # type: ignore[arg-type]
    wire = b"".join(writer.encode(ctype, data) for ctype, data in messages)
    chunk = chunk if len(wire) < 4096 else max(chunk, 997)
    got: list[tuple[int, bytes]] = []
    for i in range(0, len(wire), chunk):
        reader.feed(wire[i : i + chunk])
        while (rec := reader.next_record()) is not None:
            assert len(rec.fragment) <= 16_384
            if got and got[-1][0] == rec.content_type and rec.fragment:
                got[-1] = (rec.content_type, got[-1][1] + rec.fragment)  # a fragment continues its message
            else:
                got.append((rec.content_type, rec.fragment))
    assert reader.pending() == 0
    # Messages of one type back to back arrive as one stream, as on the wire; an empty message is its own record.
    expected: list[tuple[int, bytes]] = []
    for ctype, data in messages:
        if expected and expected[-1][0] == ctype and data:
            expected[-1] = (ctype, expected[-1][1] + data)
        else:
            expected.append((ctype, data))
    assert got == expected


@FUZZ
@given(payloads, st.sampled_from(["cbc", "gcm"]), st.integers(5, 10**6), st.integers(1, 255))
@example(PATTERN[:16385], "gcm", 16420, 1)  # the deep run's case: two records, a byte of the second one changed
def test_a_changed_protected_byte_is_an_alert(data: bytes, kind: str, pos: int, flip: int) -> None:
    pair = _protections(kind)
    assert pair is not None
    writer, reader = RecordLayer(), RecordLayer()
    writer.set_write_protection(pair[0])  # type: ignore[arg-type]
    reader.set_read_protection(pair[1])  # type: ignore[arg-type]
    wire = bytearray(writer.encode(ContentType.application_data, data))
    # A fragment byte of any record, never a header: over 16 KiB of data is two records, and a changed length in
    # the second header only makes the reader wait for bytes that never come (the deep run found that case).
    fragments: list[int] = []
    at = 0
    while at < len(wire):
        length = int.from_bytes(wire[at + 3 : at + 5], "big")
        fragments.extend(range(at + 5, at + 5 + length))
        at += 5 + length
    wire[fragments[pos % len(fragments)]] ^= flip
    reader.feed(bytes(wire))
    try:
        while reader.next_record() is not None:
            pass
    except TLCPAlert:
        return
    raise AssertionError("a changed record was accepted")
