"""The messages of a resolution and how their answers are read: the platform query a transaction's CheckSpec
names (resolution by query), and the 冲正 (2601) of a transaction with its "nothing to reverse" answer.

Pure functions, no I/O: the relay sends them and acts on what they say (gateway/relay/resolution.py).
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gateway.platform.catalogue import CheckSpec
from gateway.platform.envelope import RequestEnvelope, ResponseEnvelope, decode_request


class Verdict(enum.Enum):
    HELD = "held"  # the platform holds everything the original carried
    ABSENT = "absent"  # it holds none of it
    PARTIAL = "partial"  # some of it: nothing automatic is safe
    UNDECIDED = "undecided"  # the original names nothing to look for, or the query was refused


@dataclass(frozen=True)
class Finding:
    verdict: Verdict
    detail: str  # for the row's outcome and the log: what was looked for and what was found


def dig(doc: Any, path: str) -> Any:
    """The value at a dotted path; a list on the way stands for its first element. None where absent."""
    value = doc
    for part in path.split("."):
        if isinstance(value, list):
            value = value[0] if value else None
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _items(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, dict):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, dict)]
    return []


def query_envelope(spec: CheckSpec, original: RequestEnvelope, msgid: str, now: datetime) -> RequestEnvelope:
    """The query, in the original's header fields (sign_no, regions, operator), under a new msgid."""
    inp = original.fields.get("input")
    data = {name: dig(inp, path) for name, path in spec.input}
    fields = dict(original.fields) | {
        "infno": spec.infno,
        "msgid": msgid,
        "inf_time": f"{now:%Y-%m-%d %H:%M:%S}",
        "input": {"data": {k: v for k, v in data.items() if v is not None}},
    }
    return decode_request(json.dumps(fields, ensure_ascii=False).encode("utf-8"))


#: the platform's words for "the original transaction does not exist" in a 2601 answer
NOT_FOUND_MARKERS = ("不存在", "未找到", "无需冲正")


def reversal_envelope(original: RequestEnvelope, infno: str, msgid: str, now: datetime) -> RequestEnvelope:
    """The 冲正 of `original` (omsgid = its msgid, oinfno = its infno), in its header fields, under `msgid`."""
    fields = dict(original.fields) | {
        "infno": infno,
        "msgid": msgid,
        "inf_time": f"{now:%Y-%m-%d %H:%M:%S}",
        "input": {"data": {"psn_no": original.psn_no or "", "omsgid": original.msgid, "oinfno": original.infno}},
    }
    return decode_request(json.dumps(fields, ensure_ascii=False).encode("utf-8"))


def nothing_to_reverse(err_msg: str) -> bool:
    """A refused 2601 that says the original does not exist (the platform never booked it, or not yet)."""
    return any(marker in err_msg for marker in NOT_FOUND_MARKERS)


def judge(spec: CheckSpec, original: RequestEnvelope, answer: ResponseEnvelope) -> Finding:
    """Does the platform hold what the original carried? Compared by `spec.key` on both sides."""
    sent = {str(item[spec.key]) for item in _items(dig(original.fields.get("input"), spec.sent)) if spec.key in item}
    if not sent:
        return Finding(Verdict.UNDECIDED, f"the request carries no {spec.key} to look for")
    if not answer.ok:
        return Finding(Verdict.UNDECIDED, f"{spec.infno} refused: {answer.err_msg or f'infcode {answer.infcode}'}")
    held = {str(item[spec.key]) for item in _items(dig(answer.fields.get("output"), spec.held)) if spec.key in item}
    found = sent & held
    named = f"{spec.key} {', '.join(sorted(sent))}"
    if found == sent:
        return Finding(Verdict.HELD, f"{spec.infno} lists {named}")
    if not found:
        return Finding(Verdict.ABSENT, f"{spec.infno} lists none of {named}")
    return Finding(Verdict.PARTIAL, f"{spec.infno} lists {', '.join(sorted(found))} of {named}")
