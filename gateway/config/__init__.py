"""The daemon's configuration: one YAML file, typed and validated before anything uses it.

Load → validate → hand over whole. A file with any error never half-applies: the caller gets a ConfigError
listing every problem with file:line:column, the field path and what was expected.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, ValidationError, model_validator

from gateway.config.base import (
    DEFAULT_CONFIG_PATH,
    LIVE,
    RESTART,
    Applies,
    Port,
    PositiveSeconds,
    _Strict,
)
from gateway.config.sections import (
    AccessLogging,
    Admin,
    Api,
    Audit,
    CallbackForward,
    CallbackSection,
    Firewall,
    Health,
    IpLiteral,
    Limits,
    Logging,
    Mqtt,
    MqttTls,
    OutboxStore,
    PolicySection,
    Recon,
    ReconGroup,
    Relay,
    SessionSettings,
    TcpListen,
)
from gateway.config.upstream import (
    Failover,
    Identity,
    SecretRef,
    Upstream,
    UpstreamSecrets,
    UpstreamTlcp,
)
from gateway.errors import ConfigError
from gateway.yamlpos import Located, load_yaml, load_yaml_file, validation_problems


class Config(_Strict):
    # Sections marked RESTART are built into long-lived parts at start (listeners, directories, the upstream set
    # with its breakers and sign-in, the outbox, MQTT, the netlink watch, the firewall, the reconciliation
    # schedule); sections without a mark have their fields marked one by one.
    state_dir: Annotated[Path, RESTART] = Path("/var/lib/ybgate")
    runtime_dir: Annotated[Path, RESTART] = Path("/run/ybgate")
    #: permits plain-TCP upstreams; only for tests and the bundled demo, never on a 前置机
    development: Annotated[bool, RESTART] = False
    api: Api = Api()
    admin: Annotated[Admin, RESTART] = Admin()
    mqtt: Annotated[Mqtt, RESTART] = Mqtt()
    health: Annotated[Health, RESTART] = Health()
    #: re-read on every reload (certificate rotation); a set `certs check` would refuse keeps the running one
    identity: Annotated[Identity | None, LIVE] = None
    failover: Annotated[Failover, RESTART] = Failover()
    relay: Annotated[Relay, RESTART] = Relay()
    session: Annotated[SessionSettings | None, RESTART] = None
    #: the access policy; absent: /etc/ybgate/policies — or, with development: true only, no policy at all
    policy: PolicySection | None = None
    callback: Annotated[CallbackSection | None, RESTART] = None
    audit: Audit = Audit()
    recon: Annotated[Recon, RESTART] = Recon()
    upstreams: Annotated[list[Upstream], Field(min_length=1), RESTART]
    logging: Annotated[Logging, LIVE] = Logging()

    @model_validator(mode="after")
    def _checks(self) -> Config:
        names = [u.name for u in self.upstreams]
        dupes = {n for n in names if names.count(n) > 1}
        if dupes:
            raise ValueError(f"upstream names must be unique; repeated: {', '.join(sorted(dupes))}")
        if not any(u.role == "primary" for u in self.upstreams):
            raise ValueError("at least one upstream needs role: primary")
        if any(u.transport == "tlcp" for u in self.upstreams) and self.identity is None:
            raise ValueError("TLCP upstreams need the identity section (sign/enc certificates, keys, CA bundle)")
        profiles = sorted({u.profile for u in self.upstreams})
        if len(profiles) > 1:
            from gateway.profiles import resolve_profile

            # Upstreams may reach the platform differently (a direct link, a TIF gateway), but it is one platform:
            # how a transaction may be retried cannot depend on the link it happens to take.
            catalogues = [resolve_profile(p).catalogue for p in profiles]
            if any(c != catalogues[0] for c in catalogues[1:]):
                raise ValueError(
                    f"the upstreams' profiles ({', '.join(profiles)}) class transactions differently; "
                    "every upstream of one platform needs the same transaction catalogue"
                )
        if self.recon.enabled and (self.session is None or not self.session.sign_in):
            raise ValueError(
                "recon.enabled needs session with sign_in: true (reconciliation calls are the gateway's own "
                "requests, signed in as the session's operator)"
            )
        if not self.development:
            plain = [u.name for u in self.upstreams if u.transport == "tcp"]
            if plain:
                raise ValueError(
                    f"upstream(s) {', '.join(plain)} use plain TCP; the 专网 link must be TLCP "
                    "(plain TCP is allowed only with development: true)"
                )
        return self

    @property
    def api_socket(self) -> Path:
        return self.api.socket or self.runtime_dir / "api.sock"

    @property
    def policy_paths(self) -> list[Path] | None:
        """Where the policy comes from; None means none (development only: every local client is allowed)."""
        if self.policy is not None:
            return self.policy.paths
        return None if self.development else PolicySection().paths

    @property
    def audit_dir(self) -> Path:
        return self.audit.directory or self.state_dir / "audit"

    @property
    def recon_dir(self) -> Path:
        return self.recon.directory or self.state_dir / "recon"

    @property
    def control_socket(self) -> Path:
        """Ops operations that change state (`ybgate outbox resolve`): mode 0600, service user and root."""
        return self.runtime_dir / "control.sock"


def validate(located: Located) -> Config:
    try:
        return Config.model_validate(located.value)
    except ValidationError as exc:
        raise ConfigError(validation_problems(exc, located)) from None


def load_config(path: Path) -> Config:
    return validate(load_yaml_file(path))


def load_config_text(text: str, file: str = "<config>") -> Config:
    return validate(load_yaml(text, file))


__all__ = [
    "DEFAULT_CONFIG_PATH",
    "LIVE",
    "RESTART",
    "AccessLogging",
    "Admin",
    "Api",
    "Applies",
    "Audit",
    "CallbackForward",
    "CallbackSection",
    "Config",
    "Failover",
    "Firewall",
    "Health",
    "Identity",
    "IpLiteral",
    "Limits",
    "Logging",
    "Mqtt",
    "MqttTls",
    "OutboxStore",
    "PolicySection",
    "Port",
    "PositiveSeconds",
    "Recon",
    "ReconGroup",
    "Relay",
    "SecretRef",
    "SessionSettings",
    "TcpListen",
    "Upstream",
    "UpstreamSecrets",
    "UpstreamTlcp",
    "load_config",
    "load_config_text",
    "validate",
]
