"""SM2 key agreement (GB/T 32918.3), without the optional confirmation hashes: TLCP ECDHE uses the shared
key K directly as its 48-byte pre-master secret. The curve arithmetic is ours (see curve.py)."""

from __future__ import annotations

from gateway.crypto import curve
from gateway.crypto.errors import CryptoError
from gateway.crypto.sm2 import SM2PrivateKey, SM2PublicKey, z_value
from gateway.crypto.symmetric import sm3

_W = 127  # ceil(ceil(log2(n)) / 2) - 1 for the 256-bit order
_MASK = (1 << _W) - 1


def _bar(x: int) -> int:
    return (1 << _W) + (x & _MASK)


def kdf(z: bytes, klen: int) -> bytes:
    """The SM3 key derivation function of GB/T 32918: SM3(Z || ct) for ct = 1, 2, … truncated to klen."""
    out = b"".join(sm3(z + ct.to_bytes(4, "big")) for ct in range(1, (klen + 31) // 32 + 1))
    return out[:klen]


def sm2_key_exchange(
    *,
    own_static: SM2PrivateKey,
    own_ephemeral: SM2PrivateKey,
    peer_static: SM2PublicKey,
    peer_ephemeral: SM2PublicKey,
    own_id: bytes,
    peer_id: bytes,
    initiator: bool,
    klen: int,
) -> bytes:
    """The shared key K. `initiator` is side A of the standard; Z_A || Z_B is always initiator first."""
    try:
        r_peer = curve.decode(peer_ephemeral.point)
        p_peer = curve.decode(peer_static.point)
    except ValueError as exc:
        raise CryptoError(f"SM2 key exchange: bad peer point ({exc})") from None
    r_own = curve.decode(own_ephemeral.public_key().point)
    t = (own_static.scalar_for_key_exchange() + _bar(r_own[0]) * own_ephemeral.scalar_for_key_exchange()) % curve.N
    # h = 1 for the SM2 curve, so U = [t](P_peer + [x̄_peer] R_peer).
    u = curve.mul(t, curve.add(p_peer, curve.mul(_bar(r_peer[0]), r_peer)))
    if u is None:
        raise CryptoError("SM2 key exchange failed (point at infinity)")
    z_own = z_value(own_static.public_key().point, own_id)
    z_peer = z_value(peer_static.point, peer_id)
    za, zb = (z_own, z_peer) if initiator else (z_peer, z_own)
    return kdf(u[0].to_bytes(32, "big") + u[1].to_bytes(32, "big") + za + zb, klen)
