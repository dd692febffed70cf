"""Who signs the audit chain's checkpoints, and the hand-over when the gateway's sign certificate is rotated.

A rotation is written as a checkpoint that carries both certificates (`rotation`: `from`, the one in force,
and `to`, the new one with its intermediates) and two signatures over its hash: `sig` by the old key, as
every checkpoint, and `sig_next` by the new key. The old key vouches for its successor and the new key for its
predecessor, so a verifier holding either certificate follows the chain across the rotation both ways; and the
new certificate must chain to the CA, so a stolen old key cannot hand the chain to a certificate of its own.
Pure functions over parsed entries; the verifier reads the files.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.audit.chain import signature_ok
from gateway.crypto import Certificate, CertificateError, CryptoError, SM2PublicKey, verify_chain
from gateway.crypto.certs import SIGN

#: the bytes every rotation line holds (canonical JSON: sorted keys, no spaces), for finding them without parsing
_MARK = b'"rotation":{'


def rotation_fields(old: Sequence[Certificate], new: Sequence[Certificate]) -> dict[str, Any]:
    """What a rotation checkpoint adds to a checkpoint: both certificate paths (leaf first), and who is next."""
    return {
        "next_signer": new[0].subject,
        "rotation": {"from": [_b64(c) for c in old], "to": [_b64(c) for c in new]},
    }


def _b64(cert: Certificate) -> str:
    return base64.b64encode(cert.der).decode()


def _certs(value: Any) -> list[Certificate]:
    if not isinstance(value, list) or not value:
        raise ValueError("no certificate")
    return [Certificate.from_der(base64.b64decode(v, validate=True)) for v in value]


@dataclass
class Signers:
    """The key in force while a chain is read: it starts with the first signer and moves at each rotation. The
    certificate given must be one of the keys in force (`vouched`): that is what ties the log to it."""

    key: SM2PublicKey
    given: SM2PublicKey
    roots: list[Certificate] | None
    rotations: int = 0
    _given_seen: bool = False

    @property
    def vouched(self) -> bool:
        return self.key == self.given or self._given_seen

    @classmethod
    def for_log(
        cls, entries: Iterable[dict[str, Any]], given: SM2PublicKey, roots: list[Certificate] | None
    ) -> Signers | str:
        """From the rotation entries of a log (in order): the first signer, provided the certificate given is
        one of the log's signers; else what is wrong."""
        chain: list[Certificate] = []
        for entry in entries:
            try:
                rotation = entry["rotation"]
                if not chain:
                    chain.append(_certs(rotation["from"])[0])
                chain.append(_certs(rotation["to"])[0])
            except (KeyError, TypeError, ValueError, CryptoError):
                return f"seq {entry.get('seq')}: a rotation checkpoint whose certificates cannot be read (altered)"
        if not chain:
            return cls(given, given, roots)
        if not any(c.public_key == given for c in chain):
            names = ", ".join(dict.fromkeys(c.subject for c in chain))
            return f"the certificate given signed none of this log's checkpoints (its signers: {names})"
        return cls(chain[0].public_key, given, roots)

    def follow(self, entry: dict[str, Any]) -> str | None:
        """Check a rotation checkpoint (its `sig` by the key in force is already checked) and move to the new key;
        or what is wrong with it."""
        try:
            old = _certs(entry["rotation"]["from"])
            new = _certs(entry["rotation"]["to"])
        except (KeyError, TypeError, ValueError, CryptoError):
            return "rotation checkpoint whose certificates cannot be read (altered)"
        if old[0].public_key != self.key:
            return f"rotation from {old[0].subject}, which is not the signer in force (altered or spliced)"
        if not signature_ok(entry, new[0].public_key, field="sig_next"):
            return f"rotation to {new[0].subject}: its signature by the new key does not verify (altered)"
        if self.roots is not None:
            ts = entry.get("ts")
            at = float(ts) if isinstance(ts, (int, float)) else None
            when = dt.datetime.fromtimestamp(at, dt.UTC) if at is not None else dt.datetime.now(dt.UTC)
            try:
                verify_chain(new[0], new[1:], self.roots, when, SIGN)
            except CertificateError as exc:
                return f"rotation to a certificate the CA does not vouch for: {exc}"
        self._given_seen = self._given_seen or self.key == self.given
        self.key = new[0].public_key
        self.rotations += 1
        return None


def rotation_entries(files: Iterable[Path]) -> list[dict[str, Any]]:
    """The rotation checkpoints of a log, in order (parsed only where the bytes show one)."""
    found = []
    for path in files:
        data = path.read_bytes()
        if _MARK not in data:
            continue
        for raw in data.split(b"\n"):
            if _MARK in raw:
                try:
                    entry = json.loads(raw)
                except ValueError:
                    continue  # the chain check names the altered line
                if isinstance(entry, dict) and entry.get("kind") == "checkpoint":
                    found.append(entry)
    return found
