"""The configuration's sections other than the upstreams: the HIS face, admin, MQTT, the relay's outbox, health,
logging, the session, policy and firewall, callbacks, audit and reconciliation."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import AfterValidator, Field, field_validator, model_validator

from gateway.api.routes import template_problem
from gateway.platform.bundled import bundled_his_paths

if TYPE_CHECKING:
    pass

from gateway.config.base import LIVE, RESTART, Port, PositiveSeconds, _Strict


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
    tcp: Annotated[list[TcpListen], RESTART] = []  # noqa: RUF012 - a pydantic field, copied per model
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


class SessionSettings(_Strict):
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
    paths: Annotated[list[Path], Field(min_length=1), LIVE] = [Path("/etc/ybgate/policies")]  # noqa: RUF012
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
    extra_groups: list[ReconGroup] = []  # noqa: RUF012
