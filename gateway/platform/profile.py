"""Province profiles: how one provincial platform wants the national envelope on the wire.

A profile is data (a YAML file under profiles/, or one ops ship beside the configuration): which URL path each
infno goes to, the body's charset, whether the TIF gateway headers are sent, whether `input` is signed
(`cainfo`) and encrypted, whether the platform signs and encrypts its answers, and the transaction catalogue.
Keys and secrets are never part of a profile: they come from files the configuration names.

Sans-IO: text in, a frozen Profile out; reading the file is the caller's business.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from datetime import timedelta, timezone
from importlib.resources import files
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator

from gateway.crypto import DEFAULT_SM2_ID
from gateway.errors import ConfigError
from gateway.platform.bundled import BUNDLED
from gateway.platform.catalogue import Catalogue, national
from gateway.yamlpos import Located, load_yaml, validation_problems

_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")


class SignatureForm(enum.Enum):
    """How the 64 bytes of an SM2 signature travel: r‖s, or the DER SEQUENCE most Java stacks emit."""

    RAW = "raw"
    DER = "der"


class SignedContent(enum.Enum):
    """What exactly is signed: the UTF-8 compact JSON of the payload, or its non-empty fields sorted by key
    and joined as k=v&k=v (nested values as compact JSON with sorted keys)."""

    JSON = "json"
    SORTED_KV = "sorted_kv"


class Sm4KeySource(enum.Enum):
    """How the 16-byte SM4 key comes from the secret file: 32 hex digits, or the first 16 bytes of the SM3
    digest of the app secret's UTF-8 text."""

    HEX = "hex"
    SM3_OF_SECRET = "sm3_of_secret"  # noqa: S105 - a method name, not a secret


class Charset(enum.Enum):
    UTF8 = "utf-8"
    GBK = "gbk"
    GB18030 = "gb18030"

    @property
    def header(self) -> str:
        return {"utf-8": "UTF-8", "gbk": "GBK", "gb18030": "GB18030"}[self.value]


@dataclass(frozen=True)
class TifSpec:
    """TIF gateway headers. `allowance` is the skew the platform accepts (a request stamped further from its
    clock is refused); `warn_after` is where we start warning, so ops fix NTP before requests fail."""

    allowance: float = 180.0
    warn_after: float = 60.0


@dataclass(frozen=True)
class SignSpec:
    form: SignatureForm = SignatureForm.RAW
    content: SignedContent = SignedContent.JSON
    uid: bytes = DEFAULT_SM2_ID
    signtype: str = "SM2"
    #: the platform signs `output` the same way and we verify it with its certificate
    verify_response: bool = True
    #: sign the Base64 ciphertext (encrypt, then sign) instead of the plaintext (sign, then encrypt)
    over_ciphertext: bool = False


@dataclass(frozen=True)
class EncryptSpec:
    key_source: Sm4KeySource = Sm4KeySource.HEX
    enc_type: str = "SM4"
    #: the platform answers with `output` encrypted the same way
    output: bool = True


@dataclass(frozen=True)
class Profile:
    name: str
    description: str = ""
    charset: Charset = Charset.UTF8
    #: the default path template for every infno ({infno} is replaced); None: the upstream's path
    path: str | None = None
    #: per-infno paths, over the default
    paths: dict[str, str] = field(default_factory=dict)
    #: the paths HIS code written for this platform posts to (api.paths templates: {infno}, {*}, {**}); the
    #: gateway accepts every bundled profile's by default, so a HIS keeps the path it has
    his_paths: tuple[str, ...] = ()
    tif: TifSpec | None = None
    sign: SignSpec | None = None
    encrypt: EncryptSpec | None = None
    #: offset of the platform's local clock, for its respond_time (yyyyMMddHHmmssSSS without a zone)
    utc_offset: timezone = timezone(timedelta(hours=8))
    catalogue: Catalogue = field(default_factory=national)

    @property
    def is_plain(self) -> bool:
        """Nothing to do on the wire: the HIS's bytes go as they are."""
        return self.charset is Charset.UTF8 and self.tif is None and self.sign is None and self.encrypt is None

    def path_for(self, infno: str, base: str) -> str:
        """The URL path of `infno`: the profile's own mapping first, else `base` (already templated)."""
        mapped = self.paths.get(infno)
        return mapped.replace("{infno}", infno) if mapped is not None else base

    def needs(self, *, platform: bool = False) -> frozenset[str]:
        """The key material (ProfileKeys field names) one side must hold for this profile: the hospital signs
        requests and verifies answers, the platform the other way round."""
        out: set[str] = set()
        if self.tif is not None:
            out |= {"paasid", "tif_secret"}
        if self.encrypt is not None:
            out |= {"sm4_key", "app_id"}
        if self.sign is not None:
            out.add("peer_key" if platform else "own_key")
            if self.sign.verify_response:
                out.add("own_key" if platform else "peer_key")
        return frozenset(out)


# -- the YAML document --------------------------------------------------------------------------------------


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _path_template(v: str) -> str:
    if not v.startswith("/") or v.count("{infno}") > 1 or "{" in v.replace("{infno}", ""):
        raise ValueError(f"{v!r}: a path starts with / and may hold one {{infno}} placeholder")
    if any(c.isspace() for c in v):
        raise ValueError(f"{v!r}: a path has no spaces")
    return v


def _his_path(v: str) -> str:
    # the placeholders' grammar is the HIS face's (gateway.api.routes), checked where api.paths is built
    if not v.startswith("/") or any(c.isspace() for c in v):
        raise ValueError(f"{v!r}: a path starts with / and has no spaces")
    return v


class _TifDoc(_Doc):
    allowance: Annotated[float, Field(gt=0, le=3600)] = 180.0
    warn_after: Annotated[float, Field(gt=0, le=3600)] = 60.0


class _SignDoc(_Doc):
    form: Literal["raw", "der"] = "raw"
    content: Literal["json", "sorted_kv"] = "json"
    uid: Annotated[str, Field(min_length=1, max_length=64)] = DEFAULT_SM2_ID.decode()
    signtype: str = "SM2"
    verify_response: bool = True
    #: plaintext: sign, then encrypt; ciphertext: encrypt, then sign the Base64 text (needs encrypt)
    over: Literal["plaintext", "ciphertext"] = "plaintext"


class _EncryptDoc(_Doc):
    cipher: Literal["sm4-ecb"] = "sm4-ecb"
    key: Literal["hex", "sm3_of_secret"] = "hex"
    enc_type: str = "SM4"
    output: bool = True


class _ProfileDoc(_Doc):
    name: Annotated[str, Field(pattern=_NAME.pattern)] | None = None
    description: str = ""
    charset: Literal["utf-8", "gbk", "gb18030"] = "utf-8"
    path: str | None = None
    paths: dict[str, str] = {}
    his_paths: list[Annotated[str, AfterValidator(_his_path)]] = []
    utc_offset: Annotated[str, Field(pattern=r"^[+-][0-9]{2}:[0-9]{2}$")] = "+08:00"
    tif: _TifDoc | None = None
    sign: _SignDoc | None = None
    encrypt: _EncryptDoc | None = None
    transactions: dict[str, Any] = {}
    safe_prefixes: list[str] | None = None
    reversal_infno: str | None = None

    @field_validator("path")
    @classmethod
    def _path(cls, v: str | None) -> str | None:
        return None if v is None else _path_template(v)

    @field_validator("paths")
    @classmethod
    def _paths(cls, v: dict[str, str]) -> dict[str, str]:
        for infno, p in v.items():
            if not re.fullmatch(r"[0-9]{4}[A-Z]?", infno):
                raise ValueError(f"{infno!r}: keys are infnos (4 digits and an optional capital letter)")
            _path_template(p)
        return v


def _offset(text: str) -> timezone:
    sign = -1 if text[0] == "-" else 1
    hours, minutes = int(text[1:3]), int(text[4:6])
    return timezone(sign * timedelta(hours=hours, minutes=minutes))


def parse_profile(text: str, file: str, *, default_name: str = "profile") -> Profile:
    """A Profile from YAML text; every problem is reported with file:line:column and the field."""
    located = load_yaml(text, file)
    return _from_located(located, default_name)


def _from_located(located: Located, default_name: str) -> Profile:
    if not isinstance(located.value, dict):
        raise ConfigError([(located.position(()), "", "a profile is a YAML mapping")])
    try:
        doc = _ProfileDoc.model_validate(located.value)
    except ValidationError as exc:
        raise ConfigError(validation_problems(exc, located)) from None
    base = national()
    try:
        catalogue = base.overridden(
            {
                "transactions": doc.transactions,
                **({"safe_prefixes": doc.safe_prefixes} if doc.safe_prefixes is not None else {}),
                **({"reversal_infno": doc.reversal_infno} if doc.reversal_infno is not None else {}),
            }
        )
    except ValueError as exc:
        raise ConfigError([(located.position(("transactions",)), "transactions", str(exc))]) from None
    if doc.sign is not None and doc.sign.over == "ciphertext" and doc.encrypt is None:
        raise ConfigError([(located.position(("sign", "over")), "sign.over", "ciphertext needs an encrypt section")])
    if doc.tif is not None and doc.tif.warn_after > doc.tif.allowance:
        raise ConfigError(
            [(located.position(("tif", "warn_after")), "tif.warn_after", "must not exceed tif.allowance")]
        )
    return Profile(
        name=doc.name or default_name,
        description=doc.description,
        charset=Charset(doc.charset),
        path=doc.path,
        paths=dict(doc.paths),
        his_paths=tuple(doc.his_paths),
        tif=None if doc.tif is None else TifSpec(doc.tif.allowance, doc.tif.warn_after),
        sign=None
        if doc.sign is None
        else SignSpec(
            SignatureForm(doc.sign.form),
            SignedContent(doc.sign.content),
            doc.sign.uid.encode("utf-8"),
            doc.sign.signtype,
            doc.sign.verify_response,
            doc.sign.over == "ciphertext",
        ),
        encrypt=None
        if doc.encrypt is None
        else EncryptSpec(Sm4KeySource(doc.encrypt.key), doc.encrypt.enc_type, doc.encrypt.output),
        utc_offset=_offset(doc.utc_offset),
        catalogue=catalogue,
    )


def bundled_profile(name: str) -> Profile:
    """One of the profiles shipped with ybgate, by name."""
    if name not in BUNDLED:
        raise ConfigError([(None, "profile", f"no bundled profile {name!r}; bundled: {', '.join(BUNDLED)}")])
    resource = files("gateway.platform").joinpath(f"profiles/{name}.yaml")
    return parse_profile(resource.read_text("utf-8"), f"profiles/{name}.yaml", default_name=name)
