"""`ybgate profile …`: province profiles for ops — list, show, check the keys, and a simulator enforcing one.

ybgate profile list                          the bundled profiles
ybgate profile show NAME|FILE                what a profile does on the wire (validated; errors with file:line)
ybgate profile check [--config FILE]         every upstream's profile and keys, loaded as the daemon would
ybgate profile sim --profile P --keys DIR    the platform simulator enforcing profile P
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from gateway.config import DEFAULT_CONFIG_PATH
from gateway.errors import ConfigError, GatewayError

#: file names in a simulator keys directory (the platform's side of a profile)
SIM_KEY_FILES = {
    "paasid": "paasid",
    "app_id": "app_id",
    "tif_secret": "tif_secret",
    "sm4_key": "sm4_key",
    "own_key": "platform_sign.key.pem",
    "peer_key": "hospital_sign.crt.pem",
}


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "profile",
        help="province profiles: list, show, check keys, simulate",
        description="Province profiles say how a platform wants requests on the wire (paths, charset, TIF "
        "headers, SM2 cainfo, SM4 input/output).",
    )
    psub = p.add_subparsers(dest="profile_command", metavar="PROFILE_COMMAND", required=True)
    psub.add_parser("list", help="the profiles bundled with ybgate")
    show = psub.add_parser("show", help="what one profile does (exit 1 if it is invalid)")
    show.add_argument("profile", help="a bundled name or an absolute path to a profile YAML file")
    check = psub.add_parser("check", help="load every upstream's profile and keys as the daemon would")
    check.add_argument("--config", type=Path, default=DEFAULT_CONFIG_PATH, help="config file (default %(default)s)")
    sim = psub.add_parser(
        "sim",
        help="run the platform simulator enforcing a profile",
        description="The simulator as a platform with this profile. --keys names a directory with the platform's "
        f"side of the keys, as needed: {', '.join(SIM_KEY_FILES.values())} (secret files mode 0600).",
    )
    sim.add_argument("--profile", required=True, help="a bundled name or an absolute path to a profile YAML file")
    sim.add_argument("--keys", type=Path, required=True, help="directory with the platform-side key files")
    sim.add_argument("--host", default="127.0.0.1", help="listen address (default %(default)s)")
    sim.add_argument("--port", type=int, default=9443, help="platform port (default %(default)s)")
    sim.add_argument("--admin-port", type=int, default=9480, help="admin port (default %(default)s)")
    sim.add_argument("--pki", type=Path, default=None, help="serve TLCP with this test PKI's server certificates")


def run(args: argparse.Namespace) -> int:
    try:
        if args.profile_command == "list":
            return _list()
        if args.profile_command == "show":
            return _show(args.profile)
        if args.profile_command == "check":
            return _check(args.config)
        return _sim(args)
    except ConfigError as err:
        for pos, field, message in err.problems:
            print(f"{pos}: {field}: {message}" if pos else f"{field}: {message}", file=sys.stderr)
        return 1
    except GatewayError as err:
        print(f"ybgate profile: {err.message}", file=sys.stderr)
        return 1


def _list() -> int:
    from gateway.platform.bundled import BUNDLED
    from gateway.platform.profile import bundled_profile

    for name in BUNDLED:
        print(f"{name:10} {bundled_profile(name).description or '(the national interface as specified)'}")
    return 0


def describe(ref: str) -> list[str]:
    """What a profile does, one line per fact, in the words of the interface."""
    from gateway.profiles import SOURCES, resolve_profile

    p = resolve_profile(ref)
    out = [f"profile {p.name}: {p.description}" if p.description else f"profile {p.name}"]
    out.append(f"  charset: {p.charset.header}")
    out.append(f"  path: {p.path or '(the upstream path)'}")
    if p.his_paths:
        out.append(f"  HIS paths accepted (his_paths): {', '.join(p.his_paths)}")
    out += [f"  path {infno}: {path}" for infno, path in sorted(p.paths.items())]
    if p.tif:
        out.append(f"  TIF headers: x-tif-*; platform allows ±{p.tif.allowance:g}s, warn from {p.tif.warn_after:g}s")
    if p.sign:
        s = p.sign
        what = "the Base64 ciphertext of input" if s.over_ciphertext else f"{s.content.value} of input"
        out.append(f"  cainfo: SM2 {s.form.value} over {what}, ID {s.uid.decode(errors='replace')}")
        out.append(f"  answers signed by the platform: {'verified' if s.verify_response else 'not checked'}")
    if p.encrypt:
        out.append(f"  input encrypted: SM4-ECB/PKCS#7 Base64 (key: {p.encrypt.key_source.value})")
        out.append(f"  output encrypted: {'yes' if p.encrypt.output else 'no'}")
    needs = sorted(SOURCES[n] for n in p.needs())
    out.append(f"  upstream needs: {', '.join(needs) if needs else 'nothing'}")
    return out


def _show(ref: str) -> int:
    print("\n".join(describe(ref)))
    return 0


def _check(config_path: Path) -> int:
    from gateway.app.assembly import profile_codecs
    from gateway.config import load_config

    config = load_config(config_path)
    codecs = profile_codecs(config)
    for u in config.upstreams:
        codec = codecs[u.name]
        held = ", ".join(n for n in ("paasid", "app_id", "tif_secret", "sm4_key", "own_key", "peer_key")
                         if getattr(codec.keys, n))  # fmt: skip
        print(f"upstream {u.name}: profile {codec.profile.name}: keys ok ({held or 'none needed'})")
    return 0


def path_of(upstream: Any) -> str:
    """For `ybgate check`: the path the upstream really posts to, and the profile that says how."""
    from gateway.profiles import resolve_profile, upstream_path

    profile = resolve_profile(upstream.profile)
    path = upstream_path(upstream.path, "path" in upstream.model_fields_set, profile)
    return f"{path}  profile {profile.name}"


def key_problems(config: Any) -> list[str]:
    """For `ybgate check`: each upstream's profile keys, read as the daemon will (one problem per upstream)."""
    from gateway.profiles import ProfileSetupError, load_codec, resolve_profile

    out = []
    for u in config.upstreams:
        try:
            load_codec(u.name, resolve_profile(u.profile), paasid=u.paasid, app_id=u.app_id, refs=u.secret_refs())
        except ProfileSetupError as err:
            out.append(err.message)
    return out


def sim_keys(directory: Path, needs: frozenset[str], source: Any) -> Any:
    """The platform-side ProfileKeys from a keys directory; secret files go through the permission check."""
    from gateway.crypto import Certificate, SM2PrivateKey, read_key_file
    from gateway.platform.signing import ProfileKeys, sm4_key_from_secret
    from gateway.secretfile import read_secret

    def path(name: str) -> Path:
        return directory / SIM_KEY_FILES[name]

    values: dict[str, Any] = {}
    if "paasid" in needs:
        values["paasid"] = path("paasid").read_text("utf-8").strip()
    if "app_id" in needs:
        values["app_id"] = path("app_id").read_text("utf-8").strip()
    if "tif_secret" in needs:
        values["tif_secret"] = read_secret(path("tif_secret"))
    if "sm4_key" in needs:
        values["sm4_key"] = sm4_key_from_secret(read_secret(path("sm4_key")), source)
    if "own_key" in needs:
        values["own_key"] = SM2PrivateKey(read_key_file(path("own_key")))
    if "peer_key" in needs:
        values["peer_key"] = Certificate.load_pem_chain(path("peer_key").read_bytes())[0].public_key
    return ProfileKeys(**values)


def _sim(args: argparse.Namespace) -> int:
    from gateway.platform.profile import Sm4KeySource
    from gateway.platform.signing import ProfileCodec
    from gateway.profiles import resolve_profile

    profile = resolve_profile(args.profile)
    source = profile.encrypt.key_source if profile.encrypt else Sm4KeySource.HEX
    try:
        keys = sim_keys(args.keys, profile.needs(platform=True), source)
    except OSError as exc:
        print(f"ybgate profile sim: {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 1
    from gateway.cli.sim import cmd_sim

    return cmd_sim(args.host, args.port, args.admin_port, args.pki, profile=ProfileCodec(profile, keys, platform=True))
