"""TLCP key schedule: the TLS 1.2 PRF with HMAC-SM3, master secret, key block, Finished verify_data."""

from __future__ import annotations

from dataclasses import dataclass, field

from gateway.crypto import HmacSm3
from gateway.tlcp.suites import BulkCipher, CipherSuite

MASTER_SECRET_LEN = 48
VERIFY_DATA_LEN = 12


def prf(secret: bytes, label: bytes, seed: bytes, length: int) -> bytes:
    """P_SM3(secret, label || seed) truncated to ``length`` bytes (RFC 5246 §5 with HMAC-SM3)."""
    keyed = HmacSm3(secret)
    seed = label + seed
    out = bytearray()
    a = seed
    while len(out) < length:
        h = keyed.copy()
        h.update(a)
        a = h.digest()
        h = keyed.copy()
        h.update(a + seed)
        out += h.digest()
    return bytes(out[:length])


def master_secret(pre_master: bytes, client_random: bytes, server_random: bytes) -> bytes:
    return prf(pre_master, b"master secret", client_random + server_random, MASTER_SECRET_LEN)


def verify_data(master: bytes, *, client: bool, handshake_hash: bytes) -> bytes:
    label = b"client finished" if client else b"server finished"
    return prf(master, label, handshake_hash, VERIFY_DATA_LEN)


@dataclass(frozen=True)
class TrafficKeys:
    """One direction's record keys; empty ``mac_key`` for GCM, ``iv`` is the GCM salt or the unused CBC IV."""

    mac_key: bytes = field(repr=False)
    enc_key: bytes = field(repr=False)
    iv: bytes = field(repr=False)


@dataclass(frozen=True)
class KeyBlock:
    client: TrafficKeys
    server: TrafficKeys


def key_block(suite: CipherSuite, master: bytes, client_random: bytes, server_random: bytes) -> KeyBlock:
    kb = prf(master, b"key expansion", server_random + client_random, suite.key_block_len)
    m, k, i = suite.mac_key_len, suite.enc_key_len, suite.fixed_iv_len
    parts = []
    pos = 0
    for n in (m, m, k, k, i, i):
        parts.append(kb[pos : pos + n])
        pos += n
    cm, sm, ck, sk, ci, si = parts
    if suite.cipher is BulkCipher.GCM:
        assert not cm and not sm
    return KeyBlock(TrafficKeys(cm, ck, ci), TrafficKeys(sm, sk, si))
