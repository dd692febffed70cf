"""Building the gateway's parts from the configuration: upstream targets, profiles with their keys, TLCP
settings with the identity, MQTT and HTTP limits. Plain functions,
used by the daemon (the composition root) and by the CLI's checks."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable
from typing import TYPE_CHECKING

from gateway.config import Config, SessionSettings
from gateway.health.metrics import Metrics
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

if TYPE_CHECKING:
    from gateway.identity import LoadedIdentity


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


def session_operator(s: SessionSettings) -> Operator:
    return Operator(**s.model_dump(exclude={"sign_in", "max_age"}))


def tlcp_configs(config: Config, ident: LoadedIdentity | None = None) -> dict[str, TLCPConfig]:
    """The TLCP settings per upstream, with the identity loaded and checked (chains, roles, key permissions,
    keys matching certificates) from the files as they are now, unless given already loaded. Raises on anything
    `certs check` refuses."""
    configs: dict[str, TLCPConfig] = {}
    if config.identity is not None and any(u.transport == "tlcp" for u in config.upstreams):
        from gateway.identity import load_identity

        ident = ident or load_identity(config.identity)
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


def metered_transport(
    config: Config, metrics: Metrics, on_handshake: Callable[[str, bool], None] | None = None
) -> Transport:
    """build_transport, counting handshakes (full or resumed) and what client authentication each upstream took;
    `on_handshake` also hears of each handshake (the pool shows session reuse per upstream)."""

    def handshake(upstream: str, resumed: bool) -> None:
        metrics.tlcp_handshakes.labels(upstream, "resumed" if resumed else "full").inc()
        if on_handshake is not None:
            on_handshake(upstream, resumed)

    return build_transport(
        config,
        handshake,
        lambda upstream, choice: metrics.tlcp_client_auth_learned.labels(
            upstream, choice.shape.value, choice.form.value
        ).inc(),
    )


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


def completion_values(cfg: Config) -> dict[str, str]:
    """What envelopes are completed with for clients that ask: the sign-in operator's identity (session:)."""
    s = cfg.session
    if s is None:
        return {}
    return {
        "fixmedins_code": s.fixmedins_code,
        "fixmedins_name": s.fixmedins_name,
        "mdtrtarea_admvs": s.mdtrtarea_admvs,
        "recer_sys_code": s.recer_sys_code,
        "infver": "V1.0",
        "opter": s.opter,
        "opter_name": s.opter_name,
        "opter_type": s.opter_type,
    }
