"""Structured JSON logging (structlog) with patient data masked in every event.

Masking runs as a processor on every event, whatever module logged it, so a developer adding a log line
cannot leak a 身份证号 by forgetting to mask it. It masks by field name (names, certificate and card numbers,
phone, address) and by shape anywhere in text (18-digit resident ID with a valid check digit, mainland
mobile numbers).
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any, TextIO

import structlog

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"
_ID_RE = re.compile(r"(?<![0-9A-Za-z])([0-9]{17}[0-9Xx])(?![0-9A-Za-z])")
_PHONE_RE = re.compile(r"(?<![0-9])(1[3-9][0-9])([0-9]{4})([0-9]{4})(?![0-9])")

#: envelope/payload fields that hold personal data; matched case-insensitively
NAME_FIELDS = frozenset(
    {
        "psn_name",
        "opter_name",
        "name",
        "patient_name",
        "naty_name",
        "emp_name",
        "insu_name",
        "chfpdr_name",
        "atddr_name",
        "dr_name",
        "psn_nam",
    }
)
NUMBER_FIELDS = frozenset(
    {
        "certno",
        "psn_cert_no",
        "mdtrt_cert_no",
        "card_sn",
        "card_no",
        "cardno",
        "idcard",
        "id_card",
        "sfzh",
        "mob",
        "tel",
        "phone",
        "mobile",
        "psn_tel",
    }
)
TEXT_FIELDS = frozenset({"addr", "address", "live_addr", "resd_addr"})


def is_resident_id(value: str) -> bool:
    if len(value) != 18 or not value[:17].isdigit():
        return False
    total = sum(int(d) * w for d, w in zip(value[:17], _ID_WEIGHTS, strict=True))
    return _ID_CHECK[total % 11] == value[17].upper()


def mask_name(value: str) -> str:
    return value[:1] + "*" * (len(value) - 1) if value else value


def mask_number(value: str) -> str:
    if len(value) <= 4:
        return "*" * len(value)
    keep = 4 if len(value) >= 11 else 2
    head = 3 if len(value) >= 11 else 0
    return value[:head] + "*" * (len(value) - head - keep) + value[-keep:]


def mask_text(text: str) -> str:
    def _id(m: re.Match[str]) -> str:
        v = m.group(1)
        return mask_number(v) if is_resident_id(v) else v

    text = _ID_RE.sub(_id, text)
    return _PHONE_RE.sub(lambda m: m.group(1) + "****" + m.group(3), text)


def mask_value(key: str | None, value: Any) -> Any:
    k = key.lower() if key else None
    if isinstance(value, str):
        if k in NAME_FIELDS:
            return mask_name(value)
        if k in NUMBER_FIELDS:
            return mask_number(value)
        if k in TEXT_FIELDS:
            return value[:3] + "***" if value else value
        return mask_text(value)
    if isinstance(value, Mapping):
        return {kk: mask_value(kk if isinstance(kk, str) else None, vv) for kk, vv in value.items()}
    if isinstance(value, (list, tuple)):
        return [mask_value(k, v) for v in value]
    return value


def mask_processor(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in list(event.keys()):
        event[key] = mask_value(key, event[key])
    return event


def configure(level: str = "info", fmt: str = "json", stream: TextIO | None = None) -> None:
    """Route structlog (and stdlib logging from libraries) to one JSON line per event on `stream`."""
    out = stream or sys.stdout
    renderer: Any = (
        structlog.processors.JSONRenderer(ensure_ascii=False)
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            mask_processor,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )
    logging.basicConfig(level=level.upper(), stream=out, format="%(name)s %(levelname)s %(message)s")
