"""Every known-answer vector: SM3, HMAC-SM3, SM4 (ECB, CBC, GCM), SM2 signatures and ciphertexts."""

from __future__ import annotations

import pytest
from cryptodata import vectors

from gateway.crypto import (
    DecryptionError,
    HmacSm3,
    InvalidSignature,
    SM2PrivateKey,
    SM2PublicKey,
    Sm3Hash,
    hmac_sm3,
    pkcs7_pad,
    pkcs7_unpad,
    sm3,
    sm4_cbc_decrypt,
    sm4_cbc_encrypt,
    sm4_ecb_decrypt,
    sm4_ecb_encrypt,
    sm4_gcm_decrypt,
    sm4_gcm_encrypt,
    z_value,
)

SM3 = vectors("sm3")["vectors"]
HMAC = vectors("hmac_sm3")["vectors"]
SM4 = vectors("sm4")["vectors"]
SM2 = vectors("sm2")
KEYS = {k["name"]: k for k in SM2["keys"]}


@pytest.mark.parametrize("v", SM3, ids=[v["name"] for v in SM3])
def test_sm3(v: dict) -> None:
    msg = b"a" * 1_000_000 if v.get("msg_rule") else bytes.fromhex(v["msg_hex"])
    assert sm3(msg).hex() == v["digest_hex"]
    h = Sm3Hash()
    for i in range(0, len(msg), 7919):
        h.update(msg[i : i + 7919])
        copy = h.copy()  # reading a copy mid-way leaves the running hash alone
        copy.digest()
    assert h.digest().hex() == v["digest_hex"]


@pytest.mark.parametrize("v", HMAC, ids=[v["name"] for v in HMAC])
def test_hmac_sm3(v: dict) -> None:
    key, msg = bytes.fromhex(v["key_hex"]), bytes.fromhex(v["msg_hex"])
    assert hmac_sm3(key, msg).hex() == v["mac_hex"]
    keyed = HmacSm3(key)
    one = keyed.copy()
    one.update(msg)
    assert one.digest().hex() == v["mac_hex"]
    assert "key" not in repr(keyed).replace("<key hidden>", "")


@pytest.mark.parametrize("v", SM4, ids=[v["name"] for v in SM4])
def test_sm4(v: dict) -> None:
    key, pt = bytes.fromhex(v["key_hex"]), bytes.fromhex(v["pt_hex"])
    ct = bytes.fromhex(v["ct_hex"])
    if v["mode"] == "GCM":
        iv, aad, tag = bytes.fromhex(v["iv_hex"]), bytes.fromhex(v["aad_hex"]), bytes.fromhex(v["tag_hex"])
        assert sm4_gcm_encrypt(key, iv, pt, aad) == ct + tag
        assert sm4_gcm_decrypt(key, iv, ct + tag, aad) == pt
        with pytest.raises(DecryptionError):
            sm4_gcm_decrypt(key, iv, ct + bytes([tag[0] ^ 1]) + tag[1:], aad)
        return
    if v.get("rule"):  # the standard's 1,000,000-fold encryption of the key with itself
        block = pt
        for _ in range(1_000_000):
            block = sm4_ecb_encrypt(key, block)
        assert block == ct
        return
    padded = pkcs7_pad(pt) if v["padding"] == "pkcs7" else pt
    if v["mode"] == "ECB":
        assert sm4_ecb_encrypt(key, padded) == ct
        got = sm4_ecb_decrypt(key, ct)
    else:
        iv = bytes.fromhex(v["iv_hex"])
        assert sm4_cbc_encrypt(key, iv, padded) == ct
        got = sm4_cbc_decrypt(key, iv, ct)
    assert (pkcs7_unpad(got) if v["padding"] == "pkcs7" else got) == pt


def test_pkcs7_refuses_bad_padding() -> None:
    for bad in (b"", b"x" * 15, b"x" * 15 + b"\x00", b"x" * 14 + b"\x01\x02", b"x" * 15 + b"\x11"):
        with pytest.raises(DecryptionError):
            pkcs7_unpad(bad)


def _public(v: dict) -> SM2PublicKey:
    if "x_hex" in v:
        return SM2PublicKey.from_point(bytes.fromhex("04" + v["x_hex"] + v["y_hex"]))
    return SM2PublicKey.from_point(bytes.fromhex(KEYS[v["key"]]["public_uncompressed_hex"]))


def test_standard_example_z_and_e() -> None:
    v = SM2["sign"][0]
    pub = _public(v)
    assert z_value(pub.point, v["id"].encode()).hex() == v["za_hex"]
    assert pub.digest(bytes.fromhex(v["msg_hex"]), v["id"].encode()).hex() == v["e_hex"]


@pytest.mark.parametrize("v", SM2["sign"], ids=[v["name"] for v in SM2["sign"]])
def test_sm2_signature_vectors(v: dict) -> None:
    pub = _public(v)
    msg, uid = bytes.fromhex(v["msg_hex"]), v["id"].encode()
    raw = bytes.fromhex(v["r_hex"] + v["s_hex"])
    pub.verify(raw, msg, uid, raw=True)
    if "sig_der_hex" in v:
        pub.verify(bytes.fromhex(v["sig_der_hex"]), msg, uid)
    with pytest.raises(InvalidSignature):
        pub.verify(raw, msg, b"ALICE123@YAHOO.COM", raw=True)  # wrong ID
    with pytest.raises(InvalidSignature):
        pub.verify(raw, msg + b"x", uid, raw=True)  # other message
    flipped = bytearray(raw)
    flipped[40] ^= 0x01
    with pytest.raises(InvalidSignature):
        pub.verify(bytes(flipped), msg, uid, raw=True)
    with pytest.raises(InvalidSignature):
        SM2PrivateKey.generate().public_key().verify(raw, msg, uid, raw=True)  # wrong key


@pytest.mark.parametrize("v", SM2["encrypt"], ids=[v["name"] for v in SM2["encrypt"]])
def test_sm2_ciphertext_vectors(v: dict) -> None:
    key = SM2PrivateKey(int(KEYS[v["key"]]["d_hex"], 16))
    pt = bytes.fromhex(v["pt_hex"])
    assert key.decrypt(bytes.fromhex(v["ct_der_hex"])) == pt
    assert key.decrypt(bytes.fromhex(v["ct_raw_c1c3c2_hex"]), raw=True) == pt
    tampered = bytearray(bytes.fromhex(v["ct_raw_c1c3c2_hex"]))
    tampered[-1] ^= 1  # C2 altered: C3 no longer matches
    with pytest.raises(DecryptionError):
        key.decrypt(bytes(tampered), raw=True)
    with pytest.raises(DecryptionError):
        SM2PrivateKey.generate().decrypt(bytes.fromhex(v["ct_der_hex"]))


def test_keys_match_their_published_points() -> None:
    for k in SM2["keys"]:
        key = SM2PrivateKey(int(k["d_hex"], 16))
        assert key.public_key().point.hex() == k["public_uncompressed_hex"]
        assert SM2PrivateKey.from_pem(k["private_pkcs8_pem"].encode()).public_key() == key.public_key()
