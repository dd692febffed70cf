"""The daemon's configuration: one YAML file, typed and validated before anything uses it.

Load → validate → hand over whole. A file with any error never half-applies: the caller gets a ConfigError
listing every problem with file:line:column, the field path and what was expected.
"""

from __future__ import annotations

import enum
import ipaddress
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from gateway.api.routes import template_problem
from gateway.errors import ConfigError
from gateway.platform.bundled import bundled_his_paths
from gateway.yamlpos import Located, load_yaml, load_yaml_file, validation_problems

if TYPE_CHECKING:
    from gateway.profiles import SecretRefs

DEFAULT_CONFIG_PATH = Path("/etc/ybgate/ybgate.yaml")


class Applies(enum.Enum):
    """When a changed setting takes effect. Every field carries one of these in its annotation, or sits in a
    section whose field carries one (the mark covers the whole section, which then changes as a unit): a reload
    (SIGHUP) applies LIVE fields at once and reports the RESTART fields that changed, keeping their running values
    until the next start. gateway.config_marks reads the marks; a test holds every field to having one."""

    LIVE = "live"
    RESTART = "restart"


LIVE = Applies.LIVE
RESTART = Applies.RESTART


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
    #: 0: any free port (demos and tests side by side; the daemon logs the one it got)
    port: Annotated[int, Field(ge=0, le=65535)]


class Api(_Strict):
    socket: Annotated[Path | None, RESTART] = None
    socket_mode: Annotated[int, RESTART] = 0o660
    socket_group: Annotated[str | None, RESTART] = None
    tcp: Annotated[list[TcpListen], RESTART] = []
    #: connections the kernel queues for the API listeners before it refuses more (a HIS burst, a restart);
    #: as the socket unit's Backlog=, and capped by the kernel's net.core.somaxconn (a warning says so)
    backlog: Annotated[int, Field(ge=16, le=65535), RESTART] = 1024
    #: the path families of the province gateways HIS code is written for (see gateway.api.routes for the
    #: placeholders): by default every bundled profile's (his_paths), so a HIS keeps its path and changes only
    #: its base URL
    paths: Annotated[list[str], LIVE] = Field(default_factory=lambda: list(bundled_his_paths()))
    #: for new connections
    limits: Annotated[Limits, LIVE] = Limits()
    #: deadline for a HIS request when the HIS does not send X-Ybgate-Timeout
    default_timeout: Annotated[PositiveSeconds, LIVE] = 30.0
    #: the most a HIS may ask for with X-Ybgate-Timeout
    max_timeout: Annotated[PositiveSeconds, LIVE] = 120.0

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
            problem = template_problem(p)
            if problem is not None:
                raise ValueError(f"{p!r}: {problem}")
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
    #: a connect still pending after this long is raced by the next upstream (a silent drop costs this, not the
    #: connect timeout)
    race_after: PositiveSeconds = 1.0
    #: an upstream connection silent this long (data unacknowledged, keepalive unanswered) is dead: its breaker
    #: opens and safe requests on it are sent again elsewhere (TCP_USER_TIMEOUT; whole milliseconds, at least 1 s)
    dead_after: Annotated[float, Field(ge=1.0, le=600.0)] = 1.5


class Identity(_Strict):
    """The hospital's TLCP identity: SM2 sign and enc certificates with their keys, and the CAs it trusts."""

    sign_cert: Path
    sign_key: Path
    enc_cert: Path
    enc_key: Path
    ca_bundle: Path
    #: password of encrypted key files, from a file others cannot read (never in this YAML)
    key_password_file: Path | None = None


class OutboxStore(_Strict):
    """Where the outbox lives (a restart applies a change): the local SQLite file under state_dir, or a PostgreSQL
    database shared by a pair of 前置机, its postgresql:// DSN (with the password) in a secret file."""

    backend: Literal["sqlite", "postgresql"] = "sqlite"
    dsn_file: Path | None = None
    #: this gateway's name among the pair (the host's name by default); each start owns its rows under it
    node: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")] | None = None
    #: seconds a gateway's lease on its unfinished rows lasts without renewal (renewed every third of it): after
    #: that the other gateway claims and settles them
    lease: Annotated[float, Field(ge=1.5, le=60)] = 5.0

    @model_validator(mode="after")
    def _dsn_for_postgresql(self) -> OutboxStore:
        if self.backend == "postgresql" and self.dsn_file is None:
            raise ValueError("relay.outbox.backend postgresql needs relay.outbox.dsn_file (the DSN's secret file)")
        return self


class Relay(_Strict):
    outbox: OutboxStore = OutboxStore()
    #: FULL survives power loss (the default and the promise); NORMAL only a process crash
    outbox_synchronous: Literal["FULL", "NORMAL"] = "FULL"
    #: answered requests are kept this long (for replays by msgid, ops and reconciliation), then pruned
    retention_days: Annotated[int, Field(ge=1, le=3650)] = 30
    #: a 冲正 answered "not found" is believed only this long after the settlement went in doubt: before
    #: then the original may still be on its way to the platform (held by a slow platform or a proxy)
    reversal_settle: Annotated[float, Field(ge=0, le=3600)] = 60.0


class Health(_Strict):
    #: the 专网 interface whose link and routes are watched through netlink (none: not watched)
    interface: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:@-]{1,15}$")] | None = None
    #: how often outbox depth and in-doubt ages are refreshed for metrics, MQTT and the status page
    check_interval: PositiveSeconds = 10.0
    #: how often the identity's certificate files are read for expiry (warnings at 30, 7 and 1 days)
    cert_check_interval: PositiveSeconds = 3600.0


class UpstreamTlcp(_Strict):
    """Interop choices for one platform endpoint (GmSSL and Tongsuo servers differ)."""

    #: present our sign/enc certificates when the platform asks (mutual authentication)
    client_auth: bool = True
    #: Tongsuo servers demand [sign, enc]; GmSSL sends and expects [sign] only. auto: from the server's
    #: CertificateRequest, and on a refused handshake the other shape (what worked is remembered per upstream)
    client_cert_shape: Literal["auto", "sign_enc", "sign"] = "auto"
    #: what our CertificateVerify signs: sm3 = SM3(handshake) (the standard, Tongsuo, GmSSL 3.1.1), raw = the
    #: handshake messages (GmSSL 3.2.0); auto: sm3, and raw when the server refuses it (remembered per upstream)
    certificate_verify: Literal["auto", "sm3", "raw"] = "auto"
    #: alerts after ChangeCipherSpec: encrypted (the standard), clear (GmSSL 3.1.1 cannot parse encrypted ones), or
    #: auto: encrypted until the upstream sends an alert in the clear itself
    alerts: Literal["auto", "encrypted", "clear"] = "auto"
    #: sent as SNI only when set (GmSSL servers reject extensions they do not know)
    server_name: str | None = None
    #: accept only a platform whose sign certificate has one of these subjects (RFC 4514); empty: any the CA signed
    pinned_subjects: list[str] = []
    #: offer the session of the last full handshake for resumption (no SM2 work on either side) for this long
    #: after it, in seconds; 0 turns resumption off. A platform that does not resume answers with a full
    #: handshake, so the offer costs nothing there; keep it at or below the platform's own session timeout.
    session_lifetime: Annotated[float, Field(ge=0, le=86400)] = 300.0


def _secret_ref(v: str) -> str:
    from gateway.profiles import check_secret_ref

    return check_secret_ref(v)


SecretRef = Annotated[str, AfterValidator(_secret_ref)]


class UpstreamSecrets(_Strict):
    """Where a province profile's keys live: absolute file paths (permissions checked at start) or
    credential:NAME for a systemd credential. Never the secrets themselves."""

    #: the TIF gateway secret (x-tif-signature)
    tif_secret: SecretRef | None = None
    #: the SM4 message key: 32 hex digits, or the app secret the profile derives the key from
    sm4_key: SecretRef | None = None
    #: the hospital's SM2 key (PKCS#8 PEM) that signs cainfo
    sign_key: SecretRef | None = None
    #: password of an encrypted sign_key
    sign_key_password: SecretRef | None = None
    #: the platform's SM2 certificate (PEM) that verifies its signed answers
    platform_cert: SecretRef | None = None


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
    #: the province profile: a bundled name (national, plain, tif, sm2sm4, gbk) or an absolute .yaml path
    profile: str = "national"
    #: TIF paas id (sent in clear in every request header, so not a secret)
    paasid: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")] | None = None
    #: app_id of message-level encryption (sent in clear in the envelope)
    app_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")] | None = None
    secrets: UpstreamSecrets = UpstreamSecrets()

    @model_validator(mode="after")
    def _profile_fits(self) -> Upstream:
        from gateway.profiles import missing_fields, resolve_profile

        try:
            profile = resolve_profile(self.profile)
        except ConfigError as err:
            # The profile file's own positions, where it has them; the upstream's position comes from here.
            parts = [f"{pos}: {field}: {msg}" if pos else msg for pos, field, msg in err.problems]
            raise ValueError(f"profile {self.profile!r}: " + "; ".join(parts)) from None
        missing = missing_fields(profile, self.paasid, self.app_id, self.secret_refs())
        if missing:
            raise ValueError(f"profile {profile.name!r} needs {', '.join(missing)}")
        return self

    def secret_refs(self) -> SecretRefs:
        from gateway.profiles import SecretRefs

        return SecretRefs(**self.secrets.model_dump())


class AccessLogging(_Strict):
    """One line per HIS request (format: gateway.api.accesslog): to the journal (`journalctl -t ybgate-access`,
    through the syslog socket), a file rotated by size, stderr, or off."""

    to: Literal["journal", "file", "stderr", "off"] = "journal"
    path: Path | None = None
    max_bytes: Annotated[int, Field(ge=64 * 1024)] = 50 * 1024 * 1024
    backups: Annotated[int, Field(ge=1, le=100)] = 10
    syslog_socket: str = "/dev/log"

    @model_validator(mode="after")
    def _file_has_path(self) -> AccessLogging:
        if self.to == "file" and self.path is None:
            raise ValueError("access.to: file needs access.path")
        return self


class Logging(_Strict):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["json", "console"] = "json"
    access: AccessLogging = AccessLogging()


class Session(_Strict):
    """Sign-in (9001) on the HIS's behalf, for requests that arrive without a sign_no."""

    sign_in: bool = False
    opter: Annotated[str, Field(min_length=1, max_length=30)]
    opter_name: Annotated[str, Field(min_length=1, max_length=50)]
    opter_type: Literal["1", "2", "3"] = "1"
    fixmedins_code: Annotated[str, Field(pattern=r"^[A-Za-z0-9]{12}$")]
    fixmedins_name: Annotated[str, Field(min_length=1, max_length=200)]
    mdtrtarea_admvs: Annotated[str, Field(pattern=r"^[0-9]{6}$")]
    mac: Annotated[str, Field(min_length=1, max_length=40)]
    ip: IpLiteral
    recer_sys_code: Annotated[str, Field(min_length=1, max_length=20)] = "FSI"
    #: sign in again after this long even without an "expired" answer: platforms end sign-in sessions daily, so a
    #: sign_no never outlives a day (the bound); the default renews it twice within one
    max_age: Annotated[float, Field(gt=0, le=24 * 3600)] = 12 * 3600.0


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


class PolicySection(_Strict):
    #: policy files or directories (a directory: its *.yaml in name order); see policies/README.md
    paths: Annotated[list[Path], Field(min_length=1), LIVE] = [Path("/etc/ybgate/policies")]
    firewall: Annotated[Firewall, RESTART] = Firewall()


class CallbackForward(_Strict):
    """Where the platform's callbacks go: the HIS's local HTTP endpoint (an IP literal: no DNS on this path)."""

    host: IpLiteral
    port: Port
    path: Annotated[str, Field(pattern=r"^/[\x21-\x7e]*$")] = "/"
    timeout: PositiveSeconds = 30.0


class CallbackSection(_Strict):
    """A TLCP listener for the platform's inbound calls. Its address, port, allowed sources and the pinned
    platform certificate subjects come from the policy (callback, callback_peers), which also opens the port in
    the firewall; here only where to hand the calls."""

    enabled: bool = False
    forward: CallbackForward
    #: the CAs named in the CertificateRequest (GmSSL clients present a certificate only if theirs is named);
    #: default: the identity's ca_bundle
    client_ca_bundle: Path | None = None


class Audit(_Strict):
    """The SM3-chained audit log of every final outcome (see gateway/audit)."""

    enabled: Annotated[bool, RESTART] = True
    #: default: state_dir/audit
    directory: Annotated[Path | None, RESTART] = None
    #: live: the next write past it starts a new file
    rotate_bytes: Annotated[int, Field(ge=4096), LIVE] = 64 * 1024 * 1024
    #: live: a checkpoint declaring the new cadence is written at once (the verifier holds what follows to it)
    checkpoint_every: Annotated[int, Field(ge=1, le=1_000_000), LIVE] = 1000
    checkpoint_interval: Annotated[PositiveSeconds, LIVE] = 300.0
    #: each checkpoint's seq and hash appended here as it is made (for a syslog collector or the platform side
    #: to keep), so a tail cut after the last checkpoint is visible to `ybgate audit verify --anchor`
    anchor_file: Annotated[Path | None, RESTART] = None


class ReconGroup(_Strict):
    """A 3201 group (insurance type, clearing type, settling agency) to total even on a day without local
    settlements in it, so settlements only the platform holds are found there too."""

    insutype: Annotated[str, Field(pattern=r"^[0-9]{3}$")]
    clr_type: Annotated[str, Field(pattern=r"^[0-9]{2,6}$")]
    setl_optins: Annotated[str, Field(pattern=r"^[0-9]{6}$")]


class Recon(_Strict):
    """Daily reconciliation (对账) with the platform: 3201 totals, 3202 detail, a difference list."""

    enabled: bool = False
    #: when the day is reconciled, in platform time (Beijing, UTC+8), HH:MM
    cutoff: Annotated[str, Field(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")] = "02:00"
    #: which day the cutoff reconciles: 1 = the day before (the platform's own day closes at midnight)
    lag_days: Annotated[int, Field(ge=0, le=7)] = 1
    #: 3202 only when 3201 disagrees, or for every group
    detail: Literal["on_mismatch", "always"] = "on_mismatch"
    #: per platform call
    timeout: PositiveSeconds = 120.0
    #: an incomplete run (a call failed) is repeated after this long, up to max_attempts a day
    retry_interval: PositiveSeconds = 600.0
    max_attempts: Annotated[int, Field(ge=1, le=48)] = 6
    #: default: state_dir/recon
    directory: Path | None = None
    extra_groups: list[ReconGroup] = []


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
    session: Annotated[Session | None, RESTART] = None
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
