"""What happened lately, for the status page and `ybgate status`: recent failures and latencies.

Bounded ring buffers: the page wants "what went wrong in the last minutes", not a history (that is the
job of logs and the audit log). Messages pass through the same masking as logs.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from dataclasses import asdict, dataclass
from typing import Any

from gateway.logging import mask_text


@dataclass(frozen=True)
class RecentError:
    ts: float
    kind: str
    infno: str | None
    msgid: str | None
    message: str
    refused: bool = False  # the HIS's own mistake (bad envelope, policy), not a platform or relay failure
    repeats: int = 1  # the same msgid again (a HIS retrying): one line, counted, not a page of copies
    client: str | None = None  # the policy client that called (who to phone), None without a policy


class Recent:
    def __init__(self, errors: int = 50, latencies: int = 240) -> None:
        self.errors: deque[RecentError] = deque(maxlen=errors)
        self.latencies: deque[tuple[float, float]] = deque(maxlen=latencies)
        self.answered = 0
        self.refused = 0
        self.failed = 0
        #: by gateway_error kind: refusals (bad_envelope, policy_denied …) and relay outcomes (reversed,
        #: outcome_unknown, not_processed …) read differently, and one number hides which it is
        self.by_kind: Counter[str] = Counter()

    def error(
        self,
        kind: str,
        message: str,
        infno: str | None = None,
        msgid: str | None = None,
        *,
        refused: bool = False,
        client: str | None = None,
    ) -> None:
        """Count and keep one error; `refused` separates the HIS's refusals from failures, which ops act on
        differently (tell the HIS vendor vs look at the platform or the tunnel)."""
        if refused:
            self.refused += 1
        else:
            self.failed += 1
        self.by_kind[kind] += 1
        repeats = 1
        if msgid is not None:
            earlier = next((e for e in self.errors if e.msgid == msgid), None)
            if earlier is not None:
                self.errors.remove(earlier)
                repeats = earlier.repeats + 1
        self.errors.append(RecentError(time.time(), kind, infno, msgid, mask_text(message), refused, repeats, client))

    def answer(self, seconds: float) -> None:
        self.answered += 1
        self.latencies.append((time.time(), seconds))

    def snapshot(self) -> dict[str, Any]:
        return {
            "answered": self.answered,
            "refused": self.refused,
            "failed": self.failed,
            "by_kind": dict(self.by_kind.most_common()),
            "errors": [asdict(e) for e in reversed(self.errors)],
            "latency_ms": [round(s * 1000, 2) for _, s in self.latencies],
        }
