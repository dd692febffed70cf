"""The daemon's configuration: one YAML file, typed and validated before anything uses it.

Load → validate → hand over whole. A file with any error never half-applies: the caller gets a ConfigError
listing every problem with file:line:column, the field path and what was expected.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from gateway.errors import ConfigError, Position
from gateway.yamlpos import Located, dotted, load_yaml, load_yaml_file

DEFAULT_CONFIG_PATH = Path("/etc/ybgate/ybgate.yaml")
DEFAULT_PLATFORM_PATHS = (
    "/fsi/api/rsfComIfsService/callService",
    "/fsi/api/rsfComIfsService/callService/{infno}",
    "/ebus/fsi/api/hsa/hgs/{infno}",
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


PositiveSeconds = Annotated[float, Field(gt=0, le=3600)]
Port = Annotated[int, Field(ge=1, le=65535)]


class Limits(_Strict):
    max_header_bytes: Annotated[int, Field(ge=1024, le=1024 * 1024)] = 16 * 1024
    max_headers: Annotated[int, Field(ge=8, le=1000)] = 100
    max_body_bytes: Annotated[int, Field(ge=1024, le=64 * 1024 * 1024)] = 1024 * 1024
    header_timeout: PositiveSeconds = 10.0
    body_timeout: PositiveSeconds = 30.0
    keepalive_timeout: PositiveSeconds = 75.0


def _ip_literal(v: str) -> str:
    try:
        ipaddress.ip_address(v)
    except ValueError:
        raise ValueError("must be an IP address literal (no host names for listeners)") from None
    return v


IpLiteral = Annotated[str, AfterValidator(_ip_literal)]


class TcpListen(_Strict):
    host: IpLiteral
    port: Port


class Api(_Strict):
    socket: Path | None = None
    socket_mode: int = 0o660
    socket_group: str | None = None
    tcp: list[TcpListen] = []
    paths: list[str] = list(DEFAULT_PLATFORM_PATHS)
    limits: Limits = Limits()
    #: deadline for a HIS request when the HIS does not send X-Ybgate-Timeout
    default_timeout: PositiveSeconds = 30.0
    #: the most a HIS may ask for with X-Ybgate-Timeout
    max_timeout: PositiveSeconds = 120.0

    @field_validator("socket_mode", mode="before")
    @classmethod
    def _mode(cls, v: Any) -> int:
        # YAML 1.1 reads 0660 as octal already; a quoted "0660" is taken as octal too, as chmod would.
        if isinstance(v, str):
            try:
                v = int(v, 8)
            except ValueError:
                raise ValueError("expected an octal mode like 0660") from None
        if not isinstance(v, int) or not 0 <= v <= 0o777:
            raise ValueError("expected an octal mode like 0660")
        if v & 0o007:
            raise ValueError("the API socket must not be open to others (mode ends in 0)")
        return v

    @field_validator("paths")
    @classmethod
    def _paths(cls, v: list[str]) -> list[str]:
        for p in v:
            if not p.startswith("/") or p.count("{infno}") > 1 or ("{" in p.replace("{infno}", "")):
                raise ValueError(f"{p!r}: a path starts with / and may hold one {{infno}} placeholder")
        return v


class Admin(_Strict):
    """Metrics, status and liveness for ops; loopback by default because it is unauthenticated."""

    enabled: bool = True
    host: IpLiteral = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 9180


class MqttTls(_Strict):
    ca_file: Path
    cert_file: Path | None = None
    key_file: Path | None = None


class Mqtt(_Strict):
    """Health to an MQTT broker. Secrets come from files, never from this YAML."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: Port = 1883
    topic_prefix: Annotated[str, Field(pattern=r"^[^#+]+$")] = "ybgate"
    client_id: str | None = None
    keepalive: Annotated[int, Field(ge=2, le=3600)] = 30
    interval: PositiveSeconds = 30.0
    username: str | None = None
    password_file: Path | None = None
    tls: MqttTls | None = None


class Failover(_Strict):
    """Circuit breakers and primary/backup switching (备用链路)."""

    failures_to_open: Annotated[int, Field(ge=1, le=100)] = 3
    cooldown: PositiveSeconds = 5.0
    cooldown_max: PositiveSeconds = 60.0
    successes_to_close: Annotated[int, Field(ge=1, le=100)] = 2
    #: how long the primary must stay healthy before traffic moves back to it
    failback_after: PositiveSeconds = 30.0
    #: how often each upstream is probed (connect; with TLCP, a handshake)
    probe_interval: PositiveSeconds = 5.0


class Identity(_Strict):
    """The hospital's TLCP identity: SM2 sign and enc certificates with their keys, and the CAs it trusts."""

    sign_cert: Path
    sign_key: Path
    enc_cert: Path
    enc_key: Path
    ca_bundle: Path
    #: password of encrypted key files, from a file others cannot read (never in this YAML)
    key_password_file: Path | None = None


class Relay(_Strict):
    #: FULL survives power loss (the default and the promise); NORMAL only a process crash
    outbox_synchronous: Literal["FULL", "NORMAL"] = "FULL"
    #: answered requests are kept this long (for replays by msgid, ops and reconciliation), then pruned
    retention_days: Annotated[int, Field(ge=1, le=3650)] = 30


class Health(_Strict):
    #: the 专网 interface whose link and routes are watched through netlink (none: not watched)
    interface: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:@-]{1,15}$")] | None = None


class UpstreamTlcp(_Strict):
    """Interop choices for one platform endpoint (GmSSL and Tongsuo servers differ)."""

    #: present our sign/enc certificates when the platform asks (mutual authentication)
    client_auth: bool = True
    #: Tongsuo servers demand [sign, enc]; GmSSL sends and expects [sign] only
    client_cert_shape: Literal["sign_enc", "sign"] = "sign_enc"
    #: sent as SNI only when set (GmSSL servers reject extensions they do not know)
    server_name: str | None = None
    #: accept only a platform whose sign certificate has one of these subjects (RFC 4514); empty: any the CA signed
    pinned_subjects: list[str] = []


class Upstream(_Strict):
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,40}$")]
    role: Literal["primary", "backup"] = "primary"
    host: str
    port: Port
    transport: Literal["tlcp", "tcp"] = "tlcp"
    tlcp: UpstreamTlcp = UpstreamTlcp()
    #: the platform path requests are posted to; {infno} is replaced per request
    path: str = "/fsi/api/rsfComIfsService/callService"
    connect_timeout: PositiveSeconds = 3.0


class Firewall(_Strict):
    """nftables table `inet ybgate` rendered from the policy; off for hosts whose firewall is managed elsewhere."""

    enabled: bool = False
    #: the 专网 interface the table guards
    interface: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:@-]{1,15}$")] | None = None
    #: how often the kernel's table is read back and compared (drift detection)
    check_interval: PositiveSeconds = 30.0

    @model_validator(mode="after")
    def _needs_interface(self) -> Firewall:
        if self.enabled and self.interface is None:
            raise ValueError("firewall.enabled needs firewall.interface (the 专网 interface to guard)")
        return self


class PolicySettings(_Strict):
    """Where the access policy lives (files or directories, merged in this order; see policies/README.md)."""

    paths: Annotated[list[Path], Field(min_length=1)] = [Path("/etc/ybgate/policies")]
    firewall: Firewall = Firewall()


class Logging(_Strict):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["json", "console"] = "json"


class Config(_Strict):
    state_dir: Path = Path("/var/lib/ybgate")
    runtime_dir: Path = Path("/run/ybgate")
    #: permits plain-TCP upstreams; only for tests and the bundled demo, never on a 前置机
    development: bool = False
    api: Api = Api()
    admin: Admin = Admin()
    mqtt: Mqtt = Mqtt()
    health: Health = Health()
    identity: Identity | None = None
    failover: Failover = Failover()
    relay: Relay = Relay()
    upstreams: Annotated[list[Upstream], Field(min_length=1)]
    policy: PolicySettings = PolicySettings()
    logging: Logging = Logging()

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


def _describe(err: Any) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "missing":
        return "required field is missing"
    msg = err["msg"]
    return msg.removeprefix("Value error, ")


def validate(located: Located) -> Config:
    try:
        return Config.model_validate(located.value)
    except ValidationError as exc:
        problems: list[tuple[Position | None, str, str]] = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            # An unknown field is pointed at by its key; anything else by its value.
            key = (*loc, "__key__") if err["type"] == "extra_forbidden" else loc
            pos = located.position(key)
            problems.append((pos, dotted(loc), _describe(err)))
        problems.sort(key=lambda p: (p[0].line, p[0].column) if p[0] else (0, 0))
        raise ConfigError(problems) from None


def load_config(path: Path) -> Config:
    return validate(load_yaml_file(path))


def load_config_text(text: str, file: str = "<config>") -> Config:
    return validate(load_yaml(text, file))
