"""The four TLCP cipher suites and what the record layer and key schedule need to know about each."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from gateway.tlcp.alerts import AlertDescription, TLCPAlert


class KeyExchange(enum.Enum):
    ECC = "ECC"  # SM2 encryption of the pre-master to the server's enc certificate
    ECDHE = "ECDHE"  # SM2 key agreement (GB/T 32918.3), both sides' enc keys static + ephemeral


class BulkCipher(enum.Enum):
    CBC = "CBC"
    GCM = "GCM"


@dataclass(frozen=True)
class CipherSuite:
    code: int
    name: str
    key_exchange: KeyExchange
    cipher: BulkCipher

    @property
    def mac_key_len(self) -> int:
        return 32 if self.cipher is BulkCipher.CBC else 0

    @property
    def enc_key_len(self) -> int:
        return 16

    @property
    def fixed_iv_len(self) -> int:
        # CBC: the key block still carries 16-byte IVs (unused: each record has an explicit IV);
        # GCM: the 4-byte salt of the nonce.
        return 16 if self.cipher is BulkCipher.CBC else 4

    @property
    def key_block_len(self) -> int:
        return 2 * (self.mac_key_len + self.enc_key_len + self.fixed_iv_len)


ECC_SM4_CBC_SM3 = CipherSuite(0xE013, "ECC_SM4_CBC_SM3", KeyExchange.ECC, BulkCipher.CBC)
ECC_SM4_GCM_SM3 = CipherSuite(0xE053, "ECC_SM4_GCM_SM3", KeyExchange.ECC, BulkCipher.GCM)
ECDHE_SM4_CBC_SM3 = CipherSuite(0xE011, "ECDHE_SM4_CBC_SM3", KeyExchange.ECDHE, BulkCipher.CBC)
ECDHE_SM4_GCM_SM3 = CipherSuite(0xE051, "ECDHE_SM4_GCM_SM3", KeyExchange.ECDHE, BulkCipher.GCM)

ALL_SUITES: tuple[CipherSuite, ...] = (ECC_SM4_GCM_SM3, ECC_SM4_CBC_SM3, ECDHE_SM4_GCM_SM3, ECDHE_SM4_CBC_SM3)
BY_CODE: dict[int, CipherSuite] = {s.code: s for s in ALL_SUITES}
BY_NAME: dict[str, CipherSuite] = {s.name: s for s in ALL_SUITES}

#: TLS_EMPTY_RENEGOTIATION_INFO_SCSV: Tongsuo offers it; we neither need nor reject it.
EMPTY_RENEGOTIATION_INFO_SCSV = 0x00FF


def suite_for(code: int) -> CipherSuite:
    try:
        return BY_CODE[code]
    except KeyError:
        raise TLCPAlert(AlertDescription.illegal_parameter, f"unknown cipher suite 0x{code:04x}") from None
