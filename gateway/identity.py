"""Loading the hospital's TLCP identity from the files the configuration names.

Key files go through the permission check (a key others can read stops the start), and the certificates
through the same chain and role checks as `ybgate certs check`: a daemon never starts with an identity the
check would refuse.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from gateway.config import Identity
from gateway.crypto import Certificate, KeyFileError, SM2PrivateKey, read_key_file, verify_chain
from gateway.crypto.certs import ENC, SIGN
from gateway.health.certwatch import CertFigure
from gateway.secretfile import read_secret
from gateway.tlcp import Credentials


@dataclass(frozen=True)
class LoadedIdentity:
    credentials: Credentials
    roots: list[Certificate]


def load_identity(ident: Identity) -> LoadedIdentity:
    password = read_secret(ident.key_password_file).encode() if ident.key_password_file else None
    roots = Certificate.load_pem_chain(ident.ca_bundle.read_bytes())
    sign_chain = Certificate.load_pem_chain(ident.sign_cert.read_bytes())
    enc_chain = Certificate.load_pem_chain(ident.enc_cert.read_bytes())
    now = dt.datetime.now(dt.UTC)
    verify_chain(sign_chain[0], sign_chain[1:], roots, now, SIGN)
    verify_chain(enc_chain[0], enc_chain[1:], roots, now, ENC)
    sign_key = SM2PrivateKey(read_key_file(ident.sign_key, password))
    enc_key = SM2PrivateKey(read_key_file(ident.enc_key, password))
    for key, cert, path in ((sign_key, sign_chain[0], ident.sign_key), (enc_key, enc_chain[0], ident.enc_key)):
        if key.public_key() != cert.public_key:
            raise KeyFileError(f"{path}: does not match its certificate")
    # Intermediates only: GmSSL peers refuse a chain that includes the root.
    chain = tuple(c for c in sign_chain[1:] if not any(c.der == r.der for r in roots))
    return LoadedIdentity(Credentials(sign_key, sign_chain[0], enc_key, enc_chain[0], chain), roots)


def identity_cert_figures(ident: Identity) -> list[CertFigure]:
    """Expiry figures of the certificates the identity names, read from the files as they are now (a
    renewed file shows its new date before the daemon reloads it)."""
    figures = []
    for label, path in (("sign", ident.sign_cert), ("enc", ident.enc_cert)):
        leaf = Certificate.load_pem_chain(path.read_bytes())[0]
        figures.append(CertFigure(label, leaf.subject, leaf.not_after))
    for root in Certificate.load_pem_chain(ident.ca_bundle.read_bytes()):
        figures.append(CertFigure(f"ca:{root.subject}", root.subject, root.not_after))
    return figures
