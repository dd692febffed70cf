"""Province profiles and their keys, from the files the configuration names.

A profile is named (one bundled with ybgate) or given as an absolute path to a YAML file. Its key material
never sits in the configuration: each secret is a file whose permissions are checked (as key files and
password files are), or a systemd credential (`credential:NAME`, a file under $CREDENTIALS_DIRECTORY that
systemd provides with LoadCredential=/LoadCredentialEncrypted=).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from gateway.crypto import Certificate, CertificateError, KeyFileError, SM2PrivateKey, read_key_file
from gateway.errors import ConfigError, GatewayError
from gateway.platform.bundled import BUNDLED
from gateway.platform.profile import Profile, bundled_profile, parse_profile
from gateway.platform.signing import ProfileCodec, ProfileKeyError, ProfileKeys, sm4_key_from_secret
from gateway.secretfile import SecretFileError, read_secret

CREDENTIAL_PREFIX = "credential:"
_CREDENTIAL_NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,128}$")

#: which configuration field supplies each piece of key material a profile may need
SOURCES: Mapping[str, str] = {
    "paasid": "paasid",
    "app_id": "app_id",
    "tif_secret": "secrets.tif_secret",
    "sm4_key": "secrets.sm4_key",
    "own_key": "secrets.sign_key",
    "peer_key": "secrets.platform_cert",
}


class ProfileSetupError(GatewayError):
    """A profile's key material could not be loaded; the message names the upstream and the field."""

    kind = "profile_setup"


def check_secret_ref(ref: str) -> str:
    """A secret reference is an absolute file path or credential:NAME."""
    if ref.startswith(CREDENTIAL_PREFIX):
        if not _CREDENTIAL_NAME.match(ref.removeprefix(CREDENTIAL_PREFIX)):
            raise ValueError("credential:NAME takes a systemd credential name (letters, digits, _.@-)")
        return ref
    if not Path(ref).is_absolute():
        raise ValueError("expected an absolute file path or credential:NAME (a systemd credential)")
    return ref


def secret_path(ref: str, environ: Mapping[str, str] | None = None) -> Path:
    if not ref.startswith(CREDENTIAL_PREFIX):
        return Path(ref)
    env = os.environ if environ is None else environ
    directory = env.get("CREDENTIALS_DIRECTORY")
    if not directory:
        raise ProfileSetupError(
            f"{ref}: no $CREDENTIALS_DIRECTORY (the unit needs LoadCredential={ref.removeprefix(CREDENTIAL_PREFIX)}:…)"
        )
    return Path(directory) / ref.removeprefix(CREDENTIAL_PREFIX)


def resolve_profile(ref: str) -> Profile:
    """The profile `ref` names: a bundled one, or an absolute path to a YAML file. ConfigError if not."""
    if ref in BUNDLED:
        return bundled_profile(ref)
    path = Path(ref)
    if not path.is_absolute() or path.suffix not in (".yaml", ".yml"):
        raise ConfigError(
            [(None, "profile", f"neither a bundled profile ({', '.join(BUNDLED)}) nor an absolute .yaml path")]
        )
    try:
        text = path.read_text("utf-8")
    except OSError as exc:
        raise ConfigError([(None, "profile", f"cannot read {path}: {exc.strerror}")]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([(None, "profile", f"{path}: not UTF-8 (byte {exc.start})")]) from None
    return parse_profile(text, str(path), default_name=path.stem)


def upstream_path(path: str, path_is_set: bool, profile: Profile) -> str:
    """The path template an upstream posts to: its own `path` if the configuration sets one, else the
    profile's default, else the national one (the configuration's default)."""
    return path if path_is_set or profile.path is None else profile.path


@dataclass(frozen=True)
class SecretRefs:
    """The secret file references of one upstream (what config.UpstreamSecrets holds)."""

    tif_secret: str | None = None
    sm4_key: str | None = None
    sign_key: str | None = None
    sign_key_password: str | None = None
    platform_cert: str | None = None


def missing_fields(profile: Profile, paasid: str | None, app_id: str | None, refs: SecretRefs) -> list[str]:
    """The configuration fields the profile needs and the upstream does not set."""
    given = {
        "paasid": paasid,
        "app_id": app_id,
        "tif_secret": refs.tif_secret,
        "sm4_key": refs.sm4_key,
        "own_key": refs.sign_key,
        "peer_key": refs.platform_cert,
    }
    return sorted(SOURCES[need] for need in profile.needs() if not given[need])


def load_codec(
    upstream: str,
    profile: Profile,
    *,
    paasid: str | None,
    app_id: str | None,
    refs: SecretRefs,
    environ: Mapping[str, str] | None = None,
) -> ProfileCodec:
    """The profile with its keys, every file read through its permission check. Errors name the upstream and
    the configuration field, never a secret's value."""
    needs = profile.needs()

    def fail(field: str, why: str) -> ProfileSetupError:
        return ProfileSetupError(f"upstream {upstream}: {field}: {why}")

    def text(field: str, ref: str) -> str:
        try:
            return read_secret(secret_path(ref, environ))
        except SecretFileError as err:
            raise fail(field, err.message) from None
        except OSError as exc:
            raise fail(field, f"cannot read {ref}: {exc.strerror}") from None

    tif_secret = text("secrets.tif_secret", refs.tif_secret) if refs.tif_secret and "tif_secret" in needs else None
    sm4_key = None
    if refs.sm4_key and "sm4_key" in needs:
        assert profile.encrypt is not None
        try:
            sm4_key = sm4_key_from_secret(text("secrets.sm4_key", refs.sm4_key), profile.encrypt.key_source)
        except ProfileKeyError as err:
            raise fail("secrets.sm4_key", err.message) from None
    own_key = None
    if refs.sign_key and "own_key" in needs:
        password = (
            text("secrets.sign_key_password", refs.sign_key_password).encode() if refs.sign_key_password else None
        )
        try:
            own_key = SM2PrivateKey(read_key_file(secret_path(refs.sign_key, environ), password))
        except KeyFileError as err:
            raise fail("secrets.sign_key", err.message) from None
    peer_key = None
    if refs.platform_cert and "peer_key" in needs:
        try:
            data = secret_path(refs.platform_cert, environ).read_bytes()
            peer_key = Certificate.load_pem_chain(data)[0].public_key
        except OSError as exc:
            raise fail("secrets.platform_cert", f"cannot read {refs.platform_cert}: {exc.strerror}") from None
        except (CertificateError, IndexError):
            raise fail("secrets.platform_cert", "not a PEM SM2 certificate") from None
    keys = ProfileKeys(
        paasid=paasid, tif_secret=tif_secret, app_id=app_id, sm4_key=sm4_key, own_key=own_key, peer_key=peer_key
    )
    try:
        return ProfileCodec(profile, keys)
    except ProfileKeyError as err:
        missing = ", ".join(SOURCES[name] for name in keys.missing(profile)) or err.message
        raise fail("profile " + profile.name, f"needs {missing}") from None
