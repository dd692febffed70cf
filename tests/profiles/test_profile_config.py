"""Profiles in the configuration: validated at load with positions, keys read at start through permission
checks (files or systemd credentials), never echoed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from profilekit import PAASID, SM4_HEX, TIF_SECRET, write_private

from gateway.app.assembly import profile_codecs, upstream_targets
from gateway.config import load_config_text
from gateway.crypto.testpki import generate_test_pki
from gateway.errors import ConfigError
from gateway.profiles import ProfileSetupError, load_codec, resolve_profile

BASE = """\
development: true
state_dir: /tmp/ybgate-never-created
upstreams:
  - name: p
    host: 127.0.0.1
    port: 9443
    transport: tcp
"""


def config(extra: str):
    return load_config_text(BASE + extra, "ybgate.yaml")


def test_default_profile_is_the_national_interface() -> None:
    cfg = config("")
    assert cfg.upstreams[0].profile == "national"
    codec = profile_codecs(cfg)["p"]
    assert codec.profile.is_plain
    assert upstream_targets(cfg)[0].path == "/fsi/api/rsfComIfsService/callService"


def test_missing_key_material_is_named_with_its_position() -> None:
    with pytest.raises(ConfigError) as err:
        config("    profile: tif\n")
    (line,) = err.value.lines()
    assert line.startswith("ybgate.yaml:4:") and "profile 'tif' needs paasid, secrets.tif_secret" in line
    with pytest.raises(ConfigError, match=r"needs app_id, secrets\.platform_cert, secrets\.sign_key, secrets\.sm4_key"):
        config("    profile: sm2sm4\n")


def test_bad_references_are_refused_at_load(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="profile 'atlantis': neither a bundled profile"):
        config("    profile: atlantis\n")
    with pytest.raises(ConfigError) as err:
        config(f"    profile: tif\n    paasid: {PAASID}\n    secrets:\n      tif_secret: relative/file\n")
    assert any("ybgate.yaml:11:" in line and "secrets.tif_secret" in line for line in err.value.lines())
    with pytest.raises(ConfigError, match="credential name"):
        config("    profile: tif\n    paasid: x\n    secrets:\n      tif_secret: credential:../etc/shadow\n")
    with pytest.raises(ConfigError, match="unknown field"):
        config("    secrets:\n      tif_password: /x\n")
    broken = tmp_path / "broken.yaml"
    broken.write_text("charset: ebcdic\n")
    with pytest.raises(ConfigError) as err:
        config(f"    profile: {broken}\n")
    assert f"{broken}:1:10: charset" in str(err.value)


def test_a_province_profile_file_beside_the_config(tmp_path: Path) -> None:
    own = tmp_path / "guangdong.yaml"
    own.write_text('path: /gd/fsi/{infno}\npaths: {"9001": /gd/signin}\n')
    cfg = config(f"    profile: {own}\n")
    target = upstream_targets(cfg)[0]
    assert target.path_for("1101") == "/gd/fsi/1101"
    assert resolve_profile(str(own)).path_for("9001", target.path_for("9001")) == "/gd/signin"
    # A path set on the upstream itself wins over the profile's default.
    cfg = config(f"    profile: {own}\n    path: /mine\n")
    assert upstream_targets(cfg)[0].path == "/mine"


def test_secret_files_are_read_through_permission_checks(tmp_path: Path) -> None:
    secret = write_private(tmp_path / "tif", TIF_SECRET.encode())
    cfg = config(f"    profile: tif\n    paasid: {PAASID}\n    secrets:\n      tif_secret: {secret}\n")
    codec = profile_codecs(cfg)["p"]
    assert codec.keys.tif_secret == TIF_SECRET and TIF_SECRET not in repr(codec)
    os.chmod(secret, 0o644)
    with pytest.raises(ProfileSetupError) as err:
        profile_codecs(cfg)
    assert "upstream p: secrets.tif_secret" in err.value.message and "chmod 600" in err.value.message
    assert TIF_SECRET not in err.value.message


def test_keys_from_systemd_credentials(tmp_path: Path) -> None:
    pki = generate_test_pki(tmp_path / "pki")
    creds = tmp_path / "creds"
    creds.mkdir(mode=0o700)
    write_private(creds / "sm4", SM4_HEX.encode())
    write_private(creds / "sign", pki["client_sign.key"].read_bytes())
    write_private(creds / "platform", pki["server_sign.crt"].read_bytes())
    cfg = config(
        "    profile: sm2sm4\n    app_id: APP1\n    secrets:\n"
        "      sm4_key: credential:sm4\n      sign_key: credential:sign\n      platform_cert: credential:platform\n"
    )
    u = cfg.upstreams[0]
    env = {"CREDENTIALS_DIRECTORY": str(creds)}
    profile = resolve_profile(u.profile)

    def load(environ: dict[str, str]):
        return load_codec("p", profile, paasid=None, app_id="APP1", refs=u.secret_refs(), environ=environ)

    with pytest.raises(ProfileSetupError, match="no \\$CREDENTIALS_DIRECTORY"):
        load({})
    codec = load(env)
    assert codec.keys.sm4_key == bytes.fromhex(SM4_HEX) and codec.keys.own_key is not None
    write_private(creds / "sm4", b"not hex at all")
    with pytest.raises(ProfileSetupError, match=r"secrets\.sm4_key: the SM4 key file must hold 32 hex digits"):
        load(env)
    write_private(creds / "platform", b"-----BEGIN NOTHING-----\n")
    write_private(creds / "sm4", SM4_HEX.encode())
    with pytest.raises(ProfileSetupError, match=r"secrets\.platform_cert: not a PEM SM2 certificate"):
        load(env)


def test_upstreams_of_one_platform_share_one_catalogue(tmp_path: Path) -> None:
    secret = write_private(tmp_path / "tif", TIF_SECRET.encode())
    backup = (
        "  - name: b\n    role: backup\n    host: 127.0.0.2\n    port: 9443\n    transport: tcp\n"
        f"    profile: {{profile}}\n    paasid: {PAASID}\n    secrets:\n      tif_secret: {secret}\n"
    )
    cfg = config(backup.format(profile="tif"))  # plain primary, TIF-gateway backup: same catalogue, fine
    assert [u.profile for u in cfg.upstreams] == ["national", "tif"]
    other = tmp_path / "other.yaml"
    other.write_text('tif: {}\ntransactions: {"2207": {name: 门诊结算, class: safe}}\n')
    with pytest.raises(ConfigError, match="class transactions differently"):
        config(backup.format(profile=other))
