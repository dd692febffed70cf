"""Faults the simulator can play per infno, set at run time through its admin endpoint."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

KINDS = ("delay", "drop_before", "drop_after", "reset", "garbage", "http502", "refuse")
#: the kinds that keep a request from being processed
UNPROCESSED = ("drop_before", "http502", "refuse")


@dataclass
class Fault:
    """One fault plan.

    - delay: seconds to wait before answering (the answer still comes)
    - drop_before: close the connection without processing (nothing booked)
    - drop_after: process (book) and close without answering — the ambiguous case
    - reset: process, then reset the connection (RST)
    - garbage: process, then send bytes that are not HTTP
    - http502: do not process; answer HTTP 502 as a failing proxy in front of the platform would
    - refuse: do not process; answer a definite business refusal (infcode -1, "系统繁忙"), as a platform under
      load does
    `times` bounds how often it fires (None: until cleared).
    """

    kind: str
    delay: float = 0.0
    times: int | None = None
    fired: int = 0

    def take(self) -> bool:
        if self.times is not None and self.fired >= self.times:
            return False
        self.fired += 1
        return True


class FaultTable:
    def __init__(self) -> None:
        self._by_infno: dict[str, Fault] = {}

    def set(self, infno: str, spec: dict[str, Any]) -> Fault:
        kind = spec.get("kind")
        if kind not in KINDS:
            raise ValueError(f"fault kind must be one of {', '.join(KINDS)}, got {kind!r}")
        delay = spec.get("delay", 0.0)
        times = spec.get("times")
        if not isinstance(delay, (int, float)) or not 0 <= delay <= 600:
            raise ValueError("delay must be seconds between 0 and 600")
        if times is not None and (not isinstance(times, int) or times < 1):
            raise ValueError("times must be a positive integer or absent")
        unknown = set(spec) - {"kind", "delay", "times"}
        if unknown:
            raise ValueError(f"unknown fault fields: {', '.join(sorted(unknown))}")
        fault = Fault(kind=kind, delay=float(delay), times=times)
        self._by_infno[infno] = fault
        return fault

    def clear(self, infno: str | None = None) -> None:
        if infno is None:
            self._by_infno.clear()
        else:
            self._by_infno.pop(infno, None)

    def take(self, infno: str) -> Fault | None:
        fault = self._by_infno.get(infno) or self._by_infno.get("*")
        return fault if fault is not None and fault.take() else None

    def snapshot(self) -> dict[str, Any]:
        return {k: asdict(v) for k, v in self._by_infno.items()}
