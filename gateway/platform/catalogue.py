"""The transaction catalogue: which class each infno belongs to, as data per province profile.

The class decides what the relay may do when an outcome is unknown. Unknown infnos are money-moving: a
transaction we know nothing about is never re-sent blindly.
"""

from __future__ import annotations

import enum
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
class TxInfo:
    infno: str
    name: str
    tx_class: TxClass
    reversible: bool = False

    @property
    def may_resend(self) -> bool:
        return self.tx_class is TxClass.SAFE


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
        out[str(infno)] = TxInfo(str(infno), str(spec.get("name", "")), tx_class, bool(spec.get("reversible")))
    return out


def national() -> Catalogue:
    doc = yaml.safe_load(files("gateway.platform").joinpath("profiles/national.yaml").read_text("utf-8"))
    return Catalogue(_entries(doc["transactions"]), tuple(doc.get("safe_prefixes", ())))
