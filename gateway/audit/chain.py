"""The audit chain's entries: canonical bytes, SM3 links, signed checkpoints. Pure functions, no I/O.

An entry is one JSON line. Its `hash` is SM3(previous hash ‖ canonical JSON of the entry without `hash`),
so altering, removing, inserting or reordering any entry breaks every link after it; `seq` numbers make the
kind of break easy to name. A checkpoint is an entry of kind "checkpoint" whose hash is additionally signed
with the gateway's SM2 sign key, so a rewritten chain cannot be passed off without that key.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from gateway.crypto import CryptoError, SM2PrivateKey, SM2PublicKey, sm3

GENESIS = "0" * 64


#: what json.dumps(..., ensure_ascii=False, sort_keys=True, separators=(",", ":")) builds on every call
_CANONICAL = json.JSONEncoder(ensure_ascii=False, sort_keys=True, separators=(",", ":"))
_NOT_HASHED = frozenset(("hash", "sig", "sig_next"))


def canonical(entry: dict[str, Any]) -> bytes:
    body = entry if _NOT_HASHED.isdisjoint(entry) else {k: v for k, v in entry.items() if k not in _NOT_HASHED}
    return _CANONICAL.encode(body).encode("utf-8")


def link(prev: str, entry: dict[str, Any]) -> str:
    return sm3(bytes.fromhex(prev) + canonical(entry)).hex()


def seal(
    entry: dict[str, Any], prev: str, signer: SM2PrivateKey | None = None, next_signer: SM2PrivateKey | None = None
) -> tuple[str, bytes]:
    """The hash of `entry` linked to `prev`, and its line for the file (with prev, hash and, for a signed
    checkpoint, sig; for a signer rotation also sig_next, by the new key). The canonical bytes are serialised
    once and reused for the line: the audit log is on every request's path."""
    body = canonical(entry | {"prev": prev})
    digest = sm3(bytes.fromhex(prev) + body).hex()
    extra = f',"hash":"{digest}"'
    for name, key in (("sig", signer), ("sig_next", next_signer)):
        if key is not None:
            extra += f',"{name}":"{base64.b64encode(key.sign(bytes.fromhex(digest))).decode()}"'
    return digest, body[:-1] + extra.encode() + b"}\n"


def signature_ok(entry: dict[str, Any], key: SM2PublicKey, *, field: str = "sig") -> bool:
    try:
        key.verify(base64.b64decode(entry[field]), bytes.fromhex(entry["hash"]))
    except (KeyError, ValueError, TypeError, CryptoError):
        return False
    return True
