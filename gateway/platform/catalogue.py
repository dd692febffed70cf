"""The transaction catalogue: which class each infno belongs to, as data per province profile.

The class decides what the relay may do when an outcome is unknown. Unknown infnos are money-moving: a
transaction we know nothing about is never re-sent blindly.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from importlib.resources import files
from typing import Any

import yaml


class TxClass(enum.Enum):
    SAFE = "safe"
    CHECK_FIRST = "check_first"
    MONEY_MOVING = "money_moving"
    RESOLVER = "resolver"


@dataclass(frozen=True)
class CheckSpec:
    """How to ask the platform whether it holds a transaction whose answer was lost (resolution by query).

    Paths are dotted field names; a list met on the way stands for its first element, so
    ``feedetail.mdtrt_id`` reads the visit of the first fee line."""

    infno: str  # the query transaction (safe: it may be asked as often as needed)
    #: the query's input.data fields, each read from the original's input at a path
    input: tuple[tuple[str, str], ...]
    sent: str  # path in the original's input to the item(s) it carried
    held: str  # path in the query's output to the items the platform holds
    key: str  # the field that names an item on both sides


@dataclass(frozen=True)
class TxInfo:
    infno: str
    name: str
    tx_class: TxClass
    reversible: bool = False
    check: CheckSpec | None = None


@dataclass(frozen=True)
class Catalogue:
    entries: dict[str, TxInfo]
    safe_prefixes: tuple[str, ...] = ()
    reversal_infno: str = "2601"

    def classify(self, infno: str) -> TxInfo:
        known = self.entries.get(infno)
        if known is not None:
            return known
        if infno.startswith(self.safe_prefixes):
            return TxInfo(infno, "query", TxClass.SAFE)
        return TxInfo(infno, "unknown transaction", TxClass.MONEY_MOVING)

    def overridden(self, doc: dict[str, Any]) -> Catalogue:
        """A copy with a province profile's entries laid over these."""
        merged = dict(self.entries)
        merged.update(_entries(doc.get("transactions") or {}))
        prefixes = tuple(doc.get("safe_prefixes", self.safe_prefixes))
        return Catalogue(merged, prefixes, str(doc.get("reversal_infno", self.reversal_infno)))


def _entries(raw: dict[str, Any]) -> dict[str, TxInfo]:
    out = {}
    for infno, spec in raw.items():
        if not isinstance(spec, dict) or "class" not in spec:
            raise ValueError(f"transaction {infno}: needs a class")
        try:
            tx_class = TxClass(spec["class"])
        except ValueError:
            raise ValueError(
                f"transaction {infno}: class must be one of {', '.join(c.value for c in TxClass)}"
            ) from None
        check = _check_spec(str(infno), spec["check"]) if spec.get("check") is not None else None
        out[str(infno)] = TxInfo(str(infno), str(spec.get("name", "")), tx_class, bool(spec.get("reversible")), check)
    return out


_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


def _check_spec(infno: str, raw: Any) -> CheckSpec:
    where = f"transaction {infno}: check"
    if not isinstance(raw, dict):
        raise ValueError(f"{where} must be a mapping with infno, input, sent, held and key")  # noqa: TRY004 - profile errors are ValueErrors
    unknown = set(raw) - {"infno", "input", "sent", "held", "key"}
    if unknown:
        raise ValueError(f"{where} has unknown field(s) {', '.join(sorted(unknown))}")
    query = str(raw.get("infno", ""))
    if not re.fullmatch(r"[0-9]{4}[A-Z]?", query):
        raise ValueError(f"{where}.infno must be a query transaction number, got {query!r}")
    fields = raw.get("input")
    if not isinstance(fields, dict) or not fields:
        raise ValueError(f"{where}.input must map the query's fields to paths in the original's input")
    for name in ("sent", "held", "key", *(f"input.{k}" for k in fields)):
        value = raw.get(name) if not name.startswith("input.") else fields[name[6:]]
        if not isinstance(value, str) or not _PATH.match(value):
            raise ValueError(f"{where}.{name} must be a dotted field path, got {value!r}")
    return CheckSpec(query, tuple((str(k), str(v)) for k, v in fields.items()), raw["sent"], raw["held"], raw["key"])


def national() -> Catalogue:
    doc = yaml.safe_load(files("gateway.platform").joinpath("profiles/national.yaml").read_text("utf-8"))
    return Catalogue(_entries(doc["transactions"]), tuple(doc.get("safe_prefixes", ())))
