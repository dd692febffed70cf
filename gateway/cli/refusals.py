"""What `ybgate check` and `ybgate run` refuse: one list, so `check` (ExecStartPre) refuses first what `run` would.

Each problem is one line naming the setting and the file (and line, where a file has lines). Checks only read:
nothing here creates a directory or touches a socket.
"""

from __future__ import annotations

import grp
import os
import socket
from pathlib import Path
from typing import Any

from gateway.cli import profiles as cli_profiles
from gateway.config import Config

#: sysexits' EX_CONFIG: systemd's RestartPreventExitStatus= keeps a unit with a bad setting from restarting every second
EXIT_CONFIG = 78


def problems(config: Config, notes: list[str] | None = None) -> list[str]:
    """Every reason the daemon would refuse this configuration on this host; what was found goes to notes."""
    out = _group_problems(config)
    out += _interface_problems(config)
    out += _directory_problems(config)
    out += _identity_problems(config)
    out += _mqtt_problems(config)
    out += cli_profiles.key_problems(config)
    out += _policy_problems(config, notes if notes is not None else [])
    out += _outbox_problems(config)
    return out


def _outbox_problems(config: Config) -> list[str]:
    """A shared outbox database that does not answer or refuses the login (the one check that opens a
    connection: the daemon could not start without it)."""
    import asyncio

    from gateway.relay.backends import database_problem

    unreadable = _unreadable(("relay.outbox.dsn_file", config.relay.outbox.dsn_file))
    if unreadable:
        return unreadable
    problem = asyncio.run(database_problem(config.relay.outbox.backend, config.relay.outbox.dsn_file))
    return [problem] if problem else []


def _group_problems(config: Config) -> list[str]:
    group = config.api.socket_group
    if group is None:
        return []
    try:
        grp.getgrnam(group)
    except KeyError:
        return [f"api.socket_group: group {group!r} does not exist on this host (groupadd --system {group})"]
    return []


def _interface_problems(config: Config) -> list[str]:
    out = []
    for setting, name in (
        ("health.interface", config.health.interface),
        ("policy.firewall.interface", _fw_interface(config)),
    ):
        if name is None:
            continue
        try:
            socket.if_nametoindex(name)
        except OSError:
            out.append(f"{setting}: no network interface named {name!r} on this host (ip link show)")
    return out


def _fw_interface(config: Config) -> str | None:
    firewall = config.policy.firewall if config.policy is not None else None
    return firewall.interface if firewall is not None and firewall.enabled else None


def _directory_problems(config: Config) -> list[str]:
    """state_dir and runtime_dir exist and are writable, or their nearest existing parent lets this user create them."""
    out = []
    for setting, directory in (("state_dir", config.state_dir), ("runtime_dir", config.runtime_dir)):
        probe = directory
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        if not probe.is_dir():
            out.append(f"{setting}: {probe} is not a directory")
        elif not os.access(probe, os.W_OK | os.X_OK):
            verb = "writable" if probe == directory else f"creatable ({probe} is not writable)"
            out.append(f"{setting}: {directory} is not {verb} by uid {os.geteuid()}")
    return out


def identity_findings(config: Config) -> list[Any]:
    """The shared certificate checks (`ybgate certs check`): parse, role, EKU, chain, expiry, key match, key modes.

    Raises SecretFileError when the key password file cannot be read safely."""
    from gateway.crypto.checks import check_identity
    from gateway.secretfile import read_secret

    ident = config.identity
    if ident is None:
        raise ValueError("no identity section to check")
    password = read_secret(ident.key_password_file).encode() if ident.key_password_file else None
    return check_identity(
        sign_cert=ident.sign_cert,
        sign_key=ident.sign_key,
        enc_cert=ident.enc_cert,
        enc_key=ident.enc_key,
        ca_bundle=ident.ca_bundle,
        password=password,
        serves_callbacks=config.callback is not None and config.callback.enabled,
    )


def _identity_problems(config: Config) -> list[str]:
    from gateway.secretfile import SecretFileError

    ident = config.identity
    if ident is None:
        return []
    unreadable = _unreadable(
        ("identity.sign_cert", ident.sign_cert),
        ("identity.sign_key", ident.sign_key),
        ("identity.enc_cert", ident.enc_cert),
        ("identity.enc_key", ident.enc_key),
        ("identity.ca_bundle", ident.ca_bundle),
        ("identity.key_password_file", ident.key_password_file),
    )
    if unreadable:
        return unreadable
    try:
        findings = identity_findings(config)
    except SecretFileError as err:
        return [f"identity.key_password_file: {err.message}"]
    return [f"identity: {f.file}: {f.message}" for f in findings if f.severity == "error"]


def _unreadable(*files: tuple[str, Path | None]) -> list[str]:
    out = []
    for setting, file in files:
        if file is None:
            continue
        if not file.is_file():
            out.append(f"{setting}: {file} does not exist")
        elif not os.access(file, os.R_OK):
            out.append(f"{setting}: {file} is not readable by uid {os.geteuid()}")
    return out


def _mqtt_problems(config: Config) -> list[str]:
    from gateway.secretfile import SecretFileError, check_private

    if not config.mqtt.enabled:
        return []
    out = []
    if config.mqtt.password_file:
        try:
            check_private(config.mqtt.password_file)
        except SecretFileError as err:
            out.append(f"mqtt.password_file: {err.message}")
    tls: Any = config.mqtt.tls
    if tls is not None:
        out += _unreadable(*((f"mqtt.tls.{n}", getattr(tls, n)) for n in ("ca_file", "cert_file", "key_file")))
    return out


def _policy_problems(config: Config, notes: list[str]) -> list[str]:
    """The policy the daemon would load, with the check it makes: every upstream whitelisted."""
    from gateway.policy.engine import upstream_allowed
    from gateway.policy.loader import PolicyError, load_policy

    paths = config.policy_paths
    if paths is None:
        return []
    try:
        policy = load_policy(paths)
    except PolicyError as err:
        return err.lines()
    outside = [f"{u.name} {u.host}:{u.port}" for u in config.upstreams if not upstream_allowed(policy, u.host, u.port)]
    if outside:
        return [f"upstreams not in the policy's upstream whitelist: {', '.join(outside)}"]
    notes.append(f"policy {policy.version}: {len(policy.clients)} client(s), {len(policy.upstreams)} upstream(s)")
    return []
