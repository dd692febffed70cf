"""TLCP record layer: framing, fragmentation and the two record protections (SM4-CBC + HMAC-SM3, SM4-GCM).

Sans-IO: :meth:`RecordLayer.feed` takes bytes from the wire, :meth:`RecordLayer.next_record` hands back
decrypted records one at a time, :meth:`RecordLayer.encode` turns plaintext into wire bytes.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import Protocol

from gateway.crypto import (
    DecryptionError,
    HmacSm3,
    random_bytes,
    sm4_cbc_decrypt,
    sm4_cbc_encrypt,
    sm4_gcm_decrypt,
    sm4_gcm_encrypt,
)
from gateway.tlcp.alerts import AlertDescription, TLCPAlert
from gateway.tlcp.keyschedule import TrafficKeys
from gateway.tlcp.suites import BulkCipher, CipherSuite

TLCP_VERSION = 0x0101
HEADER_LEN = 5
MAX_PLAINTEXT = 1 << 14
#: RFC 5246 §6.2.3: a protected fragment may exceed the plaintext limit by at most 2048 bytes.
MAX_CIPHERTEXT = MAX_PLAINTEXT + 2048

MAC_LEN = 32
BLOCK = 16
GCM_EXPLICIT = 8
GCM_TAG = 16

RandomSource = Callable[[int], bytes]


class ContentType(IntEnum):
    change_cipher_spec = 20
    alert = 21
    handshake = 22
    application_data = 23


@dataclass(frozen=True)
class Record:
    content_type: ContentType
    fragment: bytes
    #: True for a 2-byte alert that arrived in the clear although the read side was already protected
    #: (GmSSL 3.1.1 sends every alert that way).
    unprotected: bool = False


def _mac_header(seq: int, content_type: int, length: int) -> bytes:
    return seq.to_bytes(8, "big") + _type_version(content_type) + length.to_bytes(2, "big")


def _type_version(content_type: int) -> bytes:
    return bytes([content_type]) + TLCP_VERSION.to_bytes(2, "big")


class RecordProtection(Protocol):
    def seal(self, seq: int, content_type: int, plaintext: bytes) -> bytes: ...
    def open(self, seq: int, content_type: int, fragment: bytes) -> bytes: ...


class NullProtection:
    """Before ChangeCipherSpec: fragments travel as they are."""

    def seal(self, seq: int, content_type: int, plaintext: bytes) -> bytes:
        return plaintext

    def open(self, seq: int, content_type: int, fragment: bytes) -> bytes:
        if len(fragment) > MAX_PLAINTEXT:
            raise TLCPAlert(AlertDescription.record_overflow, f"plaintext record of {len(fragment)} bytes")
        return fragment


class CbcProtection:
    """MAC-then-encrypt with an explicit per-record IV (TLS 1.1+ style), HMAC-SM3 and SM4-CBC."""

    def __init__(self, keys: TrafficKeys, random: RandomSource = random_bytes) -> None:
        self._mac = HmacSm3(keys.mac_key)
        self._key = keys.enc_key
        self._random = random

    def __repr__(self) -> str:
        return "CbcProtection(<keys hidden>)"

    def seal(self, seq: int, content_type: int, plaintext: bytes) -> bytes:
        h = self._mac.copy()
        h.update(_mac_header(seq, content_type, len(plaintext)) + plaintext)
        body = plaintext + h.digest()
        pad = BLOCK - 1 - len(body) % BLOCK
        body += bytes([pad]) * (pad + 1)
        iv = self._random(BLOCK)
        return iv + sm4_cbc_encrypt(self._key, iv, body)

    def open(self, seq: int, content_type: int, fragment: bytes) -> bytes:
        # Smallest record: IV + one block holding at least MAC + 1 pad byte rounded up (3 blocks).
        min_len = BLOCK + ((MAC_LEN + 1 + BLOCK - 1) // BLOCK) * BLOCK
        if len(fragment) < min_len or len(fragment) % BLOCK:
            raise TLCPAlert(AlertDescription.bad_record_mac, "CBC record length is not whole blocks")
        plain = sm4_cbc_decrypt(self._key, fragment[:BLOCK], fragment[BLOCK:])
        total = len(plain)
        pad = plain[-1]
        # Padding check without an early exit: every one of the last 256 bytes is looked at, whatever
        # the padding length claims (Lucky13).
        good = int(pad + 1 + MAC_LEN <= total)
        mismatch = 0
        for i in range(1, min(256, total) + 1):
            in_pad = int(i <= pad + 1)
            mismatch |= in_pad & int(plain[total - i] != pad)
        good &= int(mismatch == 0)
        # On bad padding, MAC as if there were no padding (RFC 5246 §6.2.3.2) so the failure takes the
        # same path as a MAC failure.
        pad_len = (pad + 1) * good + 1 * (1 - good)
        data_len = total - MAC_LEN - pad_len
        data = plain[:data_len]
        received = plain[data_len : data_len + MAC_LEN]
        h = self._mac.copy()
        h.update(_mac_header(seq, content_type, data_len) + data)
        expected = h.digest()
        # Hash the bytes the padding covered as well so that the number of SM3 compressions does not
        # depend on the padding length; the digest is thrown away.
        filler = self._mac.copy()
        filler.update(plain[data_len : total - MAC_LEN - 1])
        filler.digest()
        if not (hmac.compare_digest(received, expected) and good):
            raise TLCPAlert(AlertDescription.bad_record_mac, "record MAC or padding check failed")
        if data_len > MAX_PLAINTEXT:
            raise TLCPAlert(AlertDescription.record_overflow, f"decrypted record of {data_len} bytes")
        return data


class GcmProtection:
    """SM4-GCM, nonce = 4-byte salt from the key block || 8-byte explicit nonce carried in the record."""

    def __init__(self, keys: TrafficKeys) -> None:
        self._key = keys.enc_key
        self._salt = keys.iv

    def __repr__(self) -> str:
        return "GcmProtection(<keys hidden>)"

    def seal(self, seq: int, content_type: int, plaintext: bytes) -> bytes:
        # The sequence number is unique per key, which is all a GCM nonce needs.
        explicit = seq.to_bytes(GCM_EXPLICIT, "big")
        aad = _mac_header(seq, content_type, len(plaintext))
        return explicit + sm4_gcm_encrypt(self._key, self._salt + explicit, plaintext, aad)

    def open(self, seq: int, content_type: int, fragment: bytes) -> bytes:
        if len(fragment) < GCM_EXPLICIT + GCM_TAG:
            raise TLCPAlert(AlertDescription.bad_record_mac, "GCM record shorter than nonce and tag")
        explicit = fragment[:GCM_EXPLICIT]
        plain_len = len(fragment) - GCM_EXPLICIT - GCM_TAG
        if plain_len > MAX_PLAINTEXT:
            raise TLCPAlert(AlertDescription.record_overflow, f"GCM record of {plain_len} plaintext bytes")
        aad = _mac_header(seq, content_type, plain_len)
        try:
            return sm4_gcm_decrypt(self._key, self._salt + explicit, fragment[GCM_EXPLICIT:], aad)
        except DecryptionError:
            raise TLCPAlert(AlertDescription.bad_record_mac, "GCM tag check failed") from None


def protection_for(suite: CipherSuite, keys: TrafficKeys, random: RandomSource = random_bytes) -> RecordProtection:
    if suite.cipher is BulkCipher.CBC:
        return CbcProtection(keys, random)
    return GcmProtection(keys)


def parse_header(header: bytes) -> tuple[ContentType, int]:
    """Validate a 5-byte record header; returns (content type, fragment length)."""
    try:
        content_type = ContentType(header[0])
    except ValueError:
        raise TLCPAlert(AlertDescription.unexpected_message, f"unknown record type {header[0]}") from None
    version = int.from_bytes(header[1:3], "big")
    if version != TLCP_VERSION:
        raise TLCPAlert(AlertDescription.protocol_version, f"record version 0x{version:04x}")
    length = int.from_bytes(header[3:5], "big")
    if length > MAX_CIPHERTEXT:
        raise TLCPAlert(AlertDescription.record_overflow, f"record of {length} bytes")
    return content_type, length


class RecordLayer:
    """Both directions of the record layer of one connection."""

    def __init__(self, random: RandomSource = random_bytes) -> None:
        self._random = random
        self._inbox = bytearray()
        self._read: RecordProtection = NullProtection()
        self._write: RecordProtection = NullProtection()
        self._read_protected = False
        self._read_seq = 0
        self._write_seq = 0

    @property
    def read_protected(self) -> bool:
        return self._read_protected

    def set_read_protection(self, protection: RecordProtection) -> None:
        self._read = protection
        self._read_protected = True
        self._read_seq = 0

    def set_write_protection(self, protection: RecordProtection) -> None:
        self._write = protection
        self._write_seq = 0

    # -- inbound -------------------------------------------------------------------------------------------
    def feed(self, data: bytes) -> None:
        self._inbox += data

    def pending(self) -> int:
        return len(self._inbox)

    def next_record(self) -> Record | None:
        """The next complete record, decrypted, or None if more bytes are needed."""
        if len(self._inbox) < HEADER_LEN:
            return None
        content_type, length = parse_header(bytes(self._inbox[:HEADER_LEN]))
        if len(self._inbox) < HEADER_LEN + length:
            return None
        fragment = bytes(self._inbox[HEADER_LEN : HEADER_LEN + length])
        del self._inbox[: HEADER_LEN + length]
        if self._read_protected and content_type is ContentType.alert and length == 2:
            # No protected record is 2 bytes long (CBC >= 64, GCM >= 24), so this is unambiguous.
            return Record(content_type, fragment, unprotected=True)
        plain = self._read.open(self._read_seq, content_type, fragment)
        self._read_seq += 1
        return Record(content_type, plain)

    # -- outbound ------------------------------------------------------------------------------------------
    def encode(self, content_type: ContentType, data: bytes, *, clear: bool = False) -> bytes:
        """Wire bytes for ``data``, fragmented at 2^14; ``clear`` sends an alert unprotected."""
        out = bytearray()
        chunks = [data[i : i + MAX_PLAINTEXT] for i in range(0, len(data), MAX_PLAINTEXT)] or [b""]
        for chunk in chunks:
            if clear:
                fragment = chunk
            else:
                fragment = self._write.seal(self._write_seq, content_type, chunk)
                self._write_seq += 1
            out += _type_version(content_type) + len(fragment).to_bytes(2, "big")
            out += fragment
        return bytes(out)
