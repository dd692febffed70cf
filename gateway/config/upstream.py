"""The configuration of the platform's side: the upstreams (TLCP settings, secrets), failover between them, and
the gateway's own identity."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import AfterValidator, Field, model_validator

from gateway.errors import ConfigError

if TYPE_CHECKING:
    from gateway.profiles import SecretRefs

from gateway.config.base import Port, PositiveSeconds, _Strict


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
    pinned_subjects: list[str] = []  # noqa: RUF012 - a pydantic field, copied per model
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
