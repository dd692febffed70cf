"""Building the gateway's parts from the configuration: upstream targets, profiles with their keys, TLCP
settings with the identity, MQTT and HTTP limits, and which settings a reload may change. Plain functions,
used by the daemon (the composition root) and by the CLI's checks."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable
from typing import Any

from gateway.config import Config
from gateway.config import Session as SessionConfig
from gateway.health.mqtt import MqttSettings
from gateway.http1 import Limits
from gateway.net.tlcp_adaptive import AuthChoice, AutoSettings, configured
from gateway.net.tlcp_transport import RoutedTransport, TlcpTransport, chain_verifier
from gateway.net.transport import TcpTransport, Transport, UpstreamTarget
from gateway.platform.signing import ProfileCodec
from gateway.profiles import load_codec, resolve_profile, upstream_path
from gateway.relay.session import Operator
from gateway.secretfile import read_secret
from gateway.tlcp import AlertStyle, TLCPConfig


def upstream_targets(config: Config) -> list[UpstreamTarget]:
    targets = []
    for u in config.upstreams:
        path = upstream_path(u.path, "path" in u.model_fields_set, resolve_profile(u.profile))
        targets.append(
            UpstreamTarget(
                name=u.name,
                host=u.host,
                port=u.port,
                role=u.role,
                path=path,
                connect_timeout=u.connect_timeout,
                dead_after=config.failover.dead_after,
            )
        )
    return targets


def profile_codecs(config: Config) -> dict[str, ProfileCodec]:
    """Each upstream's province profile with its keys, read (permissions checked) before anything listens."""
    return {
        u.name: load_codec(u.name, resolve_profile(u.profile), paasid=u.paasid, app_id=u.app_id, refs=u.secret_refs())
        for u in config.upstreams
    }


def session_operator(s: SessionConfig) -> Operator:
    return Operator(**s.model_dump(exclude={"sign_in", "max_age"}))


def tlcp_configs(config: Config) -> dict[str, TLCPConfig]:
    """The TLCP settings per upstream, with the identity loaded and checked (chains, roles, key permissions,
    keys matching certificates) from the files as they are now. Raises on anything `certs check` refuses."""
    configs: dict[str, TLCPConfig] = {}
    if config.identity is not None and any(u.transport == "tlcp" for u in config.upstreams):
        from gateway.identity import load_identity

        ident = load_identity(config.identity)
        for u in config.upstreams:
            if u.transport != "tlcp":
                continue
            shape, form, _auto = configured(u.tlcp.client_cert_shape, u.tlcp.certificate_verify)
            configs[u.name] = TLCPConfig(
                credentials=ident.credentials if u.tlcp.client_auth else None,
                verify_peer=chain_verifier(ident.roots, pins=frozenset(u.tlcp.pinned_subjects)),
                server_name=u.tlcp.server_name,
                client_cert_shape=shape,
                cert_verify_form=form,
                alerts=AlertStyle(u.tlcp.alerts),
            )
    return configs


def auto_settings(config: Config) -> dict[str, AutoSettings]:
    """Per upstream: which client-auth choices are left for the gateway to find."""
    return {u.name: configured(u.tlcp.client_cert_shape, u.tlcp.certificate_verify)[2] for u in config.upstreams}


def build_transport(
    config: Config,
    on_handshake: Callable[[str, bool], None] | None = None,
    on_learned: Callable[[str, AuthChoice], None] | None = None,
) -> Transport:
    """TLCP to each upstream with its interop settings; plain TCP only where development allows it."""
    routes: dict[str, object] = {}
    lifetimes = {u.name: u.tlcp.session_lifetime for u in config.upstreams}
    tlcp = TlcpTransport(
        tlcp_configs(config), lifetimes, on_handshake=on_handshake, auto=auto_settings(config), on_learned=on_learned
    )
    tcp = TcpTransport()
    for u in config.upstreams:
        routes[u.name] = tlcp if u.transport == "tlcp" else tcp
    return RoutedTransport(routes)


def mqtt_settings(config: Config) -> MqttSettings:
    m = config.mqtt
    tls = None
    if m.tls is not None:
        tls = ssl.create_default_context(cafile=str(m.tls.ca_file))
        if m.tls.cert_file is not None:
            tls.load_cert_chain(str(m.tls.cert_file), str(m.tls.key_file) if m.tls.key_file else None)
    return MqttSettings(
        host=m.host,
        port=m.port,
        topic_prefix=m.topic_prefix,
        client_id=m.client_id or f"ybgate-{socket.gethostname()}",
        keepalive=m.keepalive,
        interval=m.interval,
        username=m.username,
        password=read_secret(m.password_file) if m.password_file else None,
        tls=tls,
    )


def http_limits(config: Config) -> Limits:
    lim = config.api.limits
    return Limits(
        max_header_bytes=lim.max_header_bytes,
        max_headers=lim.max_headers,
        max_body_bytes=lim.max_body_bytes,
        header_timeout=lim.header_timeout,
        body_timeout=lim.body_timeout,
        keepalive_timeout=lim.keepalive_timeout,
    )


# Fields a reload cannot change under a running daemon: listeners, directories, the upstream set and its
# failover, MQTT, the watched interface, the outbox settings and the sign-in operator. A reload reports them;
# they apply at the next restart. The identity is re-read on every reload (certificate rotation).
RESTART_FIELDS = (
    "state_dir",
    "runtime_dir",
    "development",
    "api.socket",
    "api.socket_mode",
    "api.socket_group",
    "api.tcp",
    "admin",
    "mqtt",
    "health",
    "failover",
    "upstreams",
    "relay",
    "session",
    "policy.firewall",
    "callback",
)


def field_of(config: Config, dotted: str) -> Any:
    value: Any = config
    for part in dotted.split("."):
        if value is None:
            return None  # an optional section that is absent
        value = getattr(value, part)
    return value


def with_fields(config: Config, values: dict[str, Any]) -> Config:
    """A copy of `config` with some dotted fields set back (frozen models: rebuild the path)."""
    for dotted, value in values.items():
        head, _, rest = dotted.partition(".")
        if rest:
            section = getattr(config, head)
            if section is None:
                continue  # the new file dropped the whole section: nothing to keep a field in
            config = config.model_copy(update={head: section.model_copy(update={rest: value})})
        else:
            config = config.model_copy(update={head: value})
    return config
