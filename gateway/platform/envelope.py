"""The national platform's request and response envelopes: decoding, validation, platform-shaped errors.

Sans-IO: bytes in, frozen values out. Every refusal names the field and what was expected, because the
person reading it is a HIS developer comparing their JSON with the interface specification.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gateway.errors import EnvelopeError, RequestError
from gateway.platform.completion import Completion, complete

# Used with fullmatch: `$` also matches before a final newline, which let "1101\n" through as an infno.
_INFNO = re.compile(r"[0-9]{4}[A-Z]?")
_MSGID = re.compile(r"[A-Za-z0-9]{30}")
_ADMDVS = re.compile(r"[0-9]{6}")
_STAMP14 = re.compile(r"([0-9]{4})([0-9]{2})([0-9]{2})([0-9]{2})([0-9]{2})([0-9]{2})")
_INF_TIME = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2}) ([0-9]{2}):([0-9]{2}):([0-9]{2})")
# A \u escape of a surrogate: the only way a lone surrogate gets into decoded JSON (see _loads_object).
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
INF_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
# Fields of the standard envelope whose values are strings when present (null is tolerated: HIS code
# generated from the specification sends null for empty optional fields).
_STRING_FIELDS = (
    "mdtrtarea_admvs",
    "insuplc_admdvs",
    "recer_sys_code",
    "dev_no",
    "dev_safe_info",
    "cainfo",
    "signtype",
    "infver",
    "opter_type",
    "opter",
    "opter_name",
    "fixmedins_code",
    "fixmedins_name",
    "sign_no",
    "app_id",
    "enc_type",
)
_STRING_NAMES = frozenset(_STRING_FIELDS)
_GB_CHARSETS = {"gbk", "gb2312", "gb18030", "cp936"}
#: how GBK bodies are decoded: a superset of GBK and GB2312 that decodes both without loss
GBK = "gb18030"


@dataclass(frozen=True)
class RequestEnvelope:
    infno: str
    msgid: str
    inf_time: datetime
    fields: dict[str, Any]
    #: the request as the platform should receive it: UTF-8 JSON (GBK input is converted at the edge)
    body: bytes
    #: the charset the HIS spoke, so the answer goes back the way it came
    charset: str = "utf-8"
    #: fields brought from a loose shape to the specification's (see _normalise)
    normalised: tuple[str, ...] = ()
    #: fields the gateway filled for a client that asks for completion (platform.completion)
    completed: tuple[str, ...] = ()

    @property
    def input(self) -> Any:
        return self.fields["input"]

    @property
    def psn_no(self) -> str | None:
        """The insured person's number, where the payload carries one (used to order money-moving work)."""
        data = self.fields["input"].get("data") if isinstance(self.fields["input"], dict) else None
        psn_no = data.get("psn_no") if isinstance(data, dict) else None
        return psn_no if isinstance(psn_no, str) and psn_no else None


@dataclass(frozen=True)
class ResponseEnvelope:
    infcode: int
    err_msg: str | None
    fields: dict[str, Any]
    body: bytes

    @property
    def ok(self) -> bool:
        return self.infcode == 0

    @property
    def output(self) -> Any:
        return self.fields.get("output")


def charset_of(content_type: str | None, default: str = "utf-8") -> str:
    """The body's charset from Content-Type (whatever the media type: the bureau's sample client posts
    text/plain); `default` when unsaid: UTF-8 (the interface default) unless the client is known to send GBK."""
    if not content_type:
        return default
    for part in content_type.split(";")[1:]:
        key, _, value = part.strip().partition("=")
        if key.strip().lower() == "charset":
            cs = value.strip().strip('"').lower()
            if cs in ("utf-8", "utf8"):
                return "utf-8"
            if cs in _GB_CHARSETS:
                return GBK
            raise RequestError(f"unsupported charset {cs!r}: send UTF-8 or GBK", http_status=415, kind="bad_charset")
    return default


def decode_text(body: bytes, charset: str) -> str:
    try:
        return body.decode(charset)
    except UnicodeDecodeError as exc:
        name = "UTF-8" if charset == "utf-8" else "GBK"
        raise RequestError(
            f"body is not valid {name} (byte {exc.start}); declare the charset in Content-Type "
            "(or give the client charset: gbk in the policy)",
            kind="bad_encoding",
        ) from exc


class _DuplicateKey(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object hook for json.loads that refuses a key named twice. Python keeps the last value, other parsers
    (the platform's among them) may keep the first: the gateway would police and class one request while the
    platform books another."""
    value = dict(pairs)
    if len(value) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return value


def _loads_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text, object_pairs_hook=_unique_keys)
    except _DuplicateKey as exc:
        # The key is a field name the HIS wrote, not a value; cut to keep a hostile one from filling the log.
        raise RequestError(
            f"body names the key {exc.key[:40]!r} twice in one object: send each key once",
            kind="duplicate_key",
        ) from None
    except json.JSONDecodeError as exc:
        raise RequestError(
            f"body is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}", kind="bad_json"
        ) from exc
    except (ValueError, RecursionError) as exc:
        # json raises these past its own checks: an integer of more than 4300 digits, nesting deeper than the
        # interpreter's recursion limit.
        raise RequestError(f"body is not JSON the gateway can read: {exc}", kind="bad_json") from None
    if not isinstance(value, dict):
        raise RequestError("body must be a JSON object (the platform envelope)", kind="bad_json")
    if _SURROGATE_ESCAPE.search(text):
        # A paired escape (an emoji as \ud83d\ude00) decodes to one character; an unpaired one leaves a string
        # that no charset can encode, which would fail later, where the request is re-encoded for the platform.
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise RequestError(
                "body holds a \\u escape of an unpaired surrogate, which is not a character", kind="bad_json"
            ) from None
    return value


def decode_request(
    body: bytes, *, charset: str = "utf-8", path_infno: str | None = None, completion: Completion | None = None
) -> RequestEnvelope:
    """Validate a HIS request envelope. `path_infno` is the infno a per-transaction URL names, if any;
    `completion` the fields the gateway fills for this client where they are missing."""
    fields = _loads_object(decode_text(body, charset))
    normalised = _normalise(fields)
    completed = complete(fields, completion) if completion is not None else ()
    infno = _check_infno(fields.get("infno"), path_infno)
    msgid = _check_msgid(fields.get("msgid"))
    inf_time = _check_inf_time(fields.get("inf_time"))
    _check_header_fields(fields, msgid)
    if "input" not in fields:
        raise EnvelopeError("input", "missing; the business payload goes in input")
    if not isinstance(fields["input"], dict):
        raise EnvelopeError("input", f"expected a JSON object, got {describe(fields['input'])}")
    # What the outbox stores, the msgid identifies and the platform receives is the normalised envelope: the
    # same raw body always normalises to the same bytes, so a replay still finds its stored answer.
    same = charset == "utf-8" and not normalised and not completed
    utf8 = body if same else json.dumps(fields, ensure_ascii=False).encode("utf-8")
    return RequestEnvelope(
        infno=infno,
        msgid=msgid,
        inf_time=inf_time,
        fields=fields,
        body=utf8,
        charset=charset,
        normalised=normalised,
        completed=completed,
    )


def _normalise(fields: dict[str, Any]) -> tuple[str, ...]:
    """Bring the loose shapes real HIS code sends, and the platform accepts, to the specification's; in place.
    The names of the fields changed (never their values: they may be personal).

    - `input` as a JSON string holding the object (the specification types it 字符型);
    - a number where a header field is a string (`opter_type: 1`);
    - `inf_time` with a `T` between date and time (ISO 8601 from a date library).
    What the platform refuses stays refused: a string input that is no JSON object, an infno or msgid of the
    wrong shape, a missing field."""
    changed: list[str] = []
    raw_input = fields.get("input")
    if isinstance(raw_input, str):
        try:
            inner = _loads_object(raw_input)
        except RequestError as err:
            raise EnvelopeError("input", f"a string that is not a JSON object ({err.message})") from None
        fields["input"] = inner
        changed.append("input")
    for name in _not_strings(fields):
        value = fields[name]
        if isinstance(value, int | float) and not isinstance(value, bool):
            fields[name] = str(value)
            changed.append(name)
    stamp = fields.get("inf_time")
    if isinstance(stamp, str) and len(stamp) == 19 and stamp[10] == "T":
        fields["inf_time"] = stamp[:10] + " " + stamp[11:]
        changed.append("inf_time")
    return tuple(changed)


def _not_strings(fields: dict[str, Any]) -> list[str]:
    """The header fields that hold something other than a string or null, in _STRING_FIELDS order: nearly always
    none, found with one set intersection instead of a look-up per field name."""
    present = fields.keys() & _STRING_NAMES
    if all(type(value := fields[name]) is str or value is None for name in present):
        return []
    return [n for n in _STRING_FIELDS if n in present and fields[n] is not None and not isinstance(fields[n], str)]


def _check_infno(infno: Any, path_infno: str | None) -> str:
    if not isinstance(infno, str) or not _INFNO.fullmatch(infno):
        raise EnvelopeError("infno", f"expected 4 digits and an optional capital letter, got {describe(infno)}")
    if path_infno is not None and path_infno != infno:
        named = repr(path_infno) if _INFNO.fullmatch(path_infno) else "something else"
        raise EnvelopeError("infno", f"body says {infno!r} but the URL names {named}")
    return infno


def _check_msgid(msgid: Any) -> str:
    if not isinstance(msgid, str) or not _MSGID.fullmatch(msgid):
        raise EnvelopeError("msgid", f"expected 30 letters or digits, got {describe(msgid)}")
    if _to_datetime(_STAMP14.fullmatch(msgid[12:26])) is None:
        raise EnvelopeError("msgid", f"characters 13-26 must be a time yyyyMMddHHmmss, got {msgid[12:26]!r}")
    return msgid


def _check_inf_time(raw: Any) -> datetime:
    value = _to_datetime(_INF_TIME.fullmatch(raw)) if isinstance(raw, str) else None
    if value is None:
        raise EnvelopeError("inf_time", f"expected 'yyyy-MM-dd HH:mm:ss', got {describe(raw)}")
    return value


def _to_datetime(match: re.Match[str] | None) -> datetime | None:
    """A calendar-checked datetime from six captured fields. Regex + constructor: strptime costs ~10x more
    and takes a lock, on the hot path of every request."""
    if match is None:
        return None
    try:
        year, month, day, hour, minute, second = (int(g) for g in match.groups())
        return datetime(year, month, day, hour, minute, second)
    except ValueError:
        return None


def _check_header_fields(fields: dict[str, Any], msgid: str) -> None:
    for name in _not_strings(fields):
        raise EnvelopeError(name, f"expected a string, got {type(fields[name]).__name__}")
    fixmedins = fields.get("fixmedins_code")
    if fixmedins and len(fixmedins) == 12 and not msgid.startswith(fixmedins):
        raise EnvelopeError("msgid", "must start with the 12 characters of fixmedins_code")
    for name in ("mdtrtarea_admvs", "insuplc_admdvs"):
        value = fields.get(name)
        if value and not _ADMDVS.fullmatch(value):
            raise EnvelopeError(name, f"expected a 6-digit region code, got {describe(value)}")
    if fields.get("opter_type") not in (None, "", "1", "2", "3"):
        raise EnvelopeError("opter_type", f"expected '1', '2' or '3', got {describe(fields['opter_type'])}")


def describe(value: Any) -> str:
    """What a refused value is, never the value itself: a HIS that fills the wrong field may put a patient's name
    or ID number there, and a refusal's reason reaches the log, the admin /status page and metrics. The shape
    (type, length, which kinds of characters) is what a developer needs to find the mistake."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    if not isinstance(value, str):
        return type(value).__name__
    if not value:
        return "an empty string"
    kinds = [
        name
        for name, present in (
            ("digits", any(c.isascii() and c.isdigit() for c in value)),
            ("letters", any(c.isascii() and c.isalpha() for c in value)),
            ("spaces", any(c.isspace() for c in value)),
            ("other ASCII", any(c.isascii() and not (c.isalnum() or c.isspace()) for c in value)),
            ("non-ASCII", any(not c.isascii() for c in value)),
        )
        if present
    ]
    return f"{len(value)} characters ({', '.join(kinds)})"


def parse_infcode(value: Any) -> int:
    """infcode arrives as a number or a string ("0", "-1") depending on the province: normalise once."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and re.fullmatch(r"-?[0-9]+", value.strip()):
        return int(value.strip())
    raise ValueError(f"infcode {value!r} is not an integer")


def decode_response(body: bytes) -> ResponseEnvelope:
    """Validate a platform response; raises ValueError with the reason if it is not an answer."""
    try:
        fields = json.loads(body.decode("utf-8"))
    except (ValueError, RecursionError) as exc:
        # ValueError: not UTF-8, not JSON, or an integer past json's digit limit; RecursionError: nesting deeper
        # than the interpreter allows.
        raise ValueError(f"platform answer is not UTF-8 JSON: {exc}") from exc
    if not isinstance(fields, dict) or "infcode" not in fields:
        raise ValueError("platform answer has no infcode")
    infcode = parse_infcode(fields["infcode"])
    err = fields.get("err_msg")
    return ResponseEnvelope(infcode=infcode, err_msg=err if isinstance(err, str) else None, fields=fields, body=body)


def error_body(message: str, *, infcode: int = -1, kind: str | None = None) -> bytes:
    """A platform-shaped failure answer from the gateway itself.

    The HIS parses platform answers already; giving gateway errors the same shape means its existing error
    path shows them. `gateway_error` lets a HIS (and ops) tell a gateway refusal from a platform one.
    """
    doc: dict[str, Any] = {
        "infcode": infcode,
        "inf_refmsgid": None,
        "refmsg_time": None,
        "respond_time": None,
        "err_msg": f"[ybgate] {message}",
        "output": None,
    }
    if kind:
        doc["gateway_error"] = kind
    return json.dumps(doc, ensure_ascii=False).encode("utf-8")
