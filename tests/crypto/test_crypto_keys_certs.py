"""Key files (GmSSL-encrypted and plain PKCS#8, permissions, secrecy), certificates and chains, the test PKI
that OpenSSL verifies, `ybgate certs check` findings, and SM2 key agreement."""

from __future__ import annotations

import datetime as dt
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
from cryptodata import NEG, PASSWORD, PKI, private_copy

from gateway.crypto import (
    Certificate,
    CertificateError,
    CryptoError,
    KeyFileError,
    SM2PrivateKey,
    check_key_file_permissions,
    read_key_file,
    sm2_key_exchange,
    verify_chain,
)
from gateway.crypto.checks import check_identity
from gateway.crypto.testpki import generate_test_pki

NOW = dt.datetime.now(dt.UTC)
CA = Certificate.from_pem((PKI / "ca.crt.pem").read_bytes())


def cert(path: Path) -> Certificate:
    return Certificate.from_pem(path.read_bytes())


@pytest.mark.parametrize("name", ["ca", "server_sign", "server_enc", "client_sign", "client_enc"])
def test_gmssl_encrypted_keys_match_the_plain_ones(name: str) -> None:
    enc = SM2PrivateKey.from_pem((PKI / f"{name}.key.pem").read_bytes(), PASSWORD)
    plain = SM2PrivateKey.from_pem((PKI / f"{name}.key.plain.pem").read_bytes())
    assert enc.public_key() == plain.public_key()
    if name != "ca":
        assert cert(PKI / f"{name}.crt.pem").public_key == plain.public_key()


def test_key_file_errors_are_specific() -> None:
    encrypted = (PKI / "server_sign.key.pem").read_bytes()
    with pytest.raises(KeyFileError, match="wrong password"):
        SM2PrivateKey.from_pem(encrypted, b"nope")
    with pytest.raises(KeyFileError, match="password is needed"):
        SM2PrivateKey.from_pem(encrypted)
    with pytest.raises(KeyFileError, match="not encrypted"):
        SM2PrivateKey.from_pem((PKI / "server_sign.key.plain.pem").read_bytes(), b"pw")
    with pytest.raises(KeyFileError, match="not a PEM private key"):
        SM2PrivateKey.from_pem(b"garbage")
    with pytest.raises(KeyFileError, match="not a private key"):
        SM2PrivateKey.from_pem((PKI / "ca.crt.pem").read_bytes())


def test_round_trip_and_secrecy() -> None:
    key = SM2PrivateKey.generate()
    again = SM2PrivateKey.from_pem(key.to_pem(b"pw"), b"pw")
    assert again.public_key() == key.public_key()
    scalar = f"{key.scalar_for_key_exchange():x}"
    for text in (repr(key), str(key), repr(again)):
        assert scalar not in text and "private" in text
    with pytest.raises(TypeError):
        pickle.dumps(key)


def test_key_file_permissions(tmp_path: Path) -> None:
    key = private_copy(PKI / "server_sign.key.pem", tmp_path)
    assert read_key_file(key, PASSWORD) > 0
    for mode in (0o644, 0o640, 0o604, 0o660):
        key.chmod(mode)
        with pytest.raises(KeyFileError) as info:
            check_key_file_permissions(key)
        assert str(key) in info.value.message and f"chmod 600 {key}" in info.value.message
        assert f"{mode:04o}" in info.value.message
    key.chmod(0o400)
    check_key_file_permissions(key)


def test_certificate_fields_and_chain() -> None:
    leaf = cert(PKI / "server_sign.crt.pem")
    assert leaf.subject.startswith("CN=localhost") and leaf.key_usage == {"digital_signature"}
    assert not leaf.is_ca and CA.is_ca
    assert verify_chain(leaf, [], [CA], NOW, "sign") == [leaf, CA]
    assert len(Certificate.load_pem_chain((PKI / "server_certs.pem").read_bytes())) == 2


@pytest.mark.parametrize(
    ("path", "role", "message"),
    [
        (NEG / "expired_sign.crt.pem", "sign", "expired on 2021"),
        (NEG / "foreign_leaf.crt.pem", "sign", "is not a trusted CA"),
        (PKI / "server_enc.crt.pem", "sign", "an encryption certificate, not usable as the sign cert"),
        (PKI / "server_sign.crt.pem", "enc", "not usable as the enc cert"),
        (PKI / "ca.crt.pem", "sign", "no digitalSignature"),
    ],
)
def test_chain_refusals_say_what_is_wrong(path: Path, role: str, message: str) -> None:
    with pytest.raises(CertificateError, match=message):
        verify_chain(cert(path), [], [CA], NOW, role)


def test_not_yet_valid() -> None:
    with pytest.raises(CertificateError, match="not valid before"):
        verify_chain(cert(PKI / "server_sign.crt.pem"), [], [CA], dt.datetime(2001, 1, 1, tzinfo=dt.UTC))


def test_test_pki_verifies_with_openssl(tmp_path: Path) -> None:
    files = generate_test_pki(tmp_path / "pki")
    ca = str(files["ca"])
    for name in ("server_sign", "server_enc", "client_sign", "client_enc"):
        result = subprocess.run(
            ["openssl", "verify", "-CAfile", ca, "-vfyopt", "distid:1234567812345678", str(files[f"{name}.crt"])],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert result.returncode == 0 and result.stdout.strip().endswith(": OK"), result.stderr
        assert (files[f"{name}.key"].stat().st_mode & 0o777) == 0o600
        assert "NOT FOR PRODUCTION" in cert(files[f"{name}.crt"]).subject
    server = cert(files["server_sign.crt"])
    text = subprocess.run(
        ["openssl", "x509", "-in", str(files["server_sign.crt"]), "-noout", "-ext", "subjectAltName"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    ).stdout
    assert "DNS:localhost" in text and "IP Address:127.0.0.1" in text
    assert server.not_after - server.not_before > dt.timedelta(days=3000)


def identity(tmp_path: Path, **override: Path) -> dict[str, Path]:
    files = generate_test_pki(tmp_path / "pki")
    paths = {
        "sign_cert": files["server_sign.crt"],
        "sign_key": files["server_sign.key"],
        "enc_cert": files["server_enc.crt"],
        "enc_key": files["server_enc.key"],
        "ca_bundle": files["ca"],
    }
    return paths | override


def errors(findings: list) -> list[str]:
    return [f.message for f in findings if f.severity == "error"]


def test_check_identity_clean(tmp_path: Path) -> None:
    findings = check_identity(**identity(tmp_path))
    assert errors(findings) == []
    assert sum(1 for f in findings if f.severity == "ok") == 4


def test_check_identity_each_problem_has_its_own_message(tmp_path: Path) -> None:
    ids = identity(tmp_path)
    expired_key = private_copy(NEG / "expired_sign.key.pem", tmp_path)
    loose = private_copy(ids["enc_key"], tmp_path / "pki" / "..")
    loose.chmod(0o644)
    cases = {
        "expired leaf": (
            {"sign_cert": NEG / "expired_sign.crt.pem", "sign_key": expired_key, "ca_bundle": PKI / "ca.crt.pem"},
            "expired on",
        ),
        "unrelated CA": ({"ca_bundle": NEG / "other_ca.crt.pem"}, "is not a trusted CA"),
        "enc as sign": ({"sign_cert": ids["enc_cert"], "sign_key": ids["enc_key"]}, "an encryption certificate"),
        "mismatched key": ({"sign_key": ids["enc_key"]}, "does not match the sign certificate"),
        "0644 key file": ({"enc_key": loose}, "mode 0644 is readable or writable by group or others"),
    }
    seen = set()
    for name, (override, message) in cases.items():
        found = errors(check_identity(**(ids | override)))
        assert any(message in m for m in found), (name, found)
        seen.add(next(m for m in found if message in m))
    assert len(seen) == len(cases)


def test_cli_certs(tmp_path: Path) -> None:
    def run(*a):
        return subprocess.run(
            [sys.executable, "-m", "gateway", *a],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    gen = run("certs", "gen-test-pki", str(tmp_path / "pki"))
    assert gen.returncode == 0 and "NOT FOR PRODUCTION" in gen.stdout
    pki = tmp_path / "pki"
    cfg = tmp_path / "c.yaml"
    base = (
        "development: true\nupstreams: [{name: s, host: 127.0.0.1, port: 1, transport: tcp}]\nidentity:\n"
        f"  sign_cert: {pki}/server_sign.crt.pem\n  sign_key: {pki}/server_sign.key.pem\n"
        f"  enc_cert: {pki}/server_enc.crt.pem\n  ca_bundle: {pki}/ca.crt.pem\n"
    )
    cfg.write_text(base + f"  enc_key: {pki}/server_enc.key.pem\n")
    good = run("certs", "check", "--config", str(cfg))
    assert good.returncode == 0, good.stdout + good.stderr
    assert good.stdout.count("OK ") == 4 and "days to expiry" in good.stdout
    cfg.write_text(base + f"  enc_key: {pki}/server_sign.key.pem\n")
    bad = run("certs", "check", "--config", str(cfg))
    assert bad.returncode == 1 and "does not match the enc certificate" in bad.stdout

    # A rotation drill: without a kept CA key there is nothing to issue from, and it says so.
    refused = run("certs", "issue", str(pki))
    assert refused.returncode == 1 and "--keep-ca-key" in refused.stderr and not (pki / "ca.key.pem").exists()
    kept = tmp_path / "kept"
    assert run("certs", "gen-test-pki", "--keep-ca-key", str(kept)).returncode == 0
    assert (kept / "ca.key.pem").stat().st_mode & 0o777 == 0o600
    before = Certificate.from_pem((kept / "client_sign.crt.pem").read_bytes())
    renewed = run("certs", "issue", "--role", "client", str(kept))
    assert renewed.returncode == 0, renewed.stderr
    after = Certificate.from_pem((kept / "client_sign.crt.pem").read_bytes())
    assert after.serial != before.serial and after.subject == before.subject
    assert (kept / "client_sign.key.pem").stat().st_mode & 0o777 == 0o600
    cfg.write_text(
        "development: true\nupstreams: [{name: s, host: 127.0.0.1, port: 1, transport: tcp}]\nidentity:\n"
        + "".join(
            f"  {k}: {kept}/client_{k.replace('_cert', '.crt').replace('_key', '.key')}.pem\n"
            for k in ("sign_cert", "sign_key", "enc_cert", "enc_key")
        )
        + f"  ca_bundle: {kept}/ca.crt.pem\n"
    )
    chained = run("certs", "check", "--config", str(cfg))
    assert chained.returncode == 0, chained.stdout + chained.stderr  # the new pair chains to the kept CA


def test_key_agreement_both_sides_and_ids() -> None:
    a, b, ra, rb = (SM2PrivateKey.generate() for _ in range(4))
    args = {"klen": 48}
    ka = sm2_key_exchange(
        own_static=a,
        own_ephemeral=ra,
        peer_static=b.public_key(),
        peer_ephemeral=rb.public_key(),
        own_id=b"A",
        peer_id=b"B",
        initiator=True,
        **args,
    )
    kb = sm2_key_exchange(
        own_static=b,
        own_ephemeral=rb,
        peer_static=a.public_key(),
        peer_ephemeral=ra.public_key(),
        own_id=b"B",
        peer_id=b"A",
        initiator=False,
        **args,
    )
    assert ka == kb and len(ka) == 48
    other = sm2_key_exchange(
        own_static=b,
        own_ephemeral=rb,
        peer_static=a.public_key(),
        peer_ephemeral=ra.public_key(),
        own_id=b"B",
        peer_id=b"X",
        initiator=False,
        **args,
    )
    assert other != ka
    with pytest.raises(CryptoError):
        from gateway.crypto import SM2PublicKey

        SM2PublicKey.from_point(b"\x04" + b"\x01" * 64)


def test_a_peer_sending_its_own_untrusted_root_is_an_unknown_ca() -> None:
    other = cert(NEG / "other_ca.crt.pem")
    with pytest.raises(CertificateError, match="is not a trusted CA"):
        verify_chain(cert(PKI / "server_sign.crt.pem"), [CA], [other], NOW, "sign")


def _recorded_identity(tmp_path: Path, side: str) -> dict[str, Path]:
    """The recorded sessions' PKI: client certificates carry extendedKeyUsage clientAuth only, server ones
    serverAuth only."""
    return {
        "sign_cert": PKI / f"{side}_sign.crt.pem",
        "sign_key": private_copy(PKI / f"{side}_sign.key.plain.pem", tmp_path),
        "enc_cert": PKI / f"{side}_enc.crt.pem",
        "enc_key": private_copy(PKI / f"{side}_enc.key.plain.pem", tmp_path),
        "ca_bundle": PKI / "ca.crt.pem",
    }


def test_check_identity_names_the_role_an_extended_key_usage_rules_out(tmp_path: Path) -> None:
    client = _recorded_identity(tmp_path, "client")
    # clientAuth only: fine towards the upstreams; with the callback listener on it must also serve
    assert errors(check_identity(**client)) == []
    assert any("lacks serverAuth: not usable for the callback listener" in f.message for f in check_identity(**client))
    found = errors(check_identity(**client, serves_callbacks=True))
    assert len(found) == 2  # sign and enc
    assert all("lacks serverAuth" in m and "callback listener's server certificate" in m for m in found)
    # serverAuth only: refused as the hospital's client certificate, whatever the callback setting
    found = errors(check_identity(**_recorded_identity(tmp_path, "server")))
    assert len(found) == 2 and all("lacks clientAuth" in m for m in found)


def test_check_identity_without_extended_key_usage_adds_no_role_lines(tmp_path: Path) -> None:
    findings = check_identity(**identity(tmp_path), serves_callbacks=True)
    assert errors(findings) == [] and not any("TLCP" in f.message for f in findings)
