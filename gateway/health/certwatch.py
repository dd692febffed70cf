"""Certificate expiry: days left per certificate, and warnings when one crosses 30, 7 and 1 days.

Pure bookkeeping (the caller reads the files and passes `now`): a warning is raised once per threshold a
certificate crosses, so a 60-second check loop does not repeat the same alarm all day, while a certificate
that keeps approaching its end warns again at each step, and once more when it has expired.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

THRESHOLDS_DAYS = (30, 7, 1)


@dataclass(frozen=True)
class CertFigure:
    label: str  # which certificate: sign, enc, ca:<subject>
    subject: str
    not_after: dt.datetime

    def days_left(self, now: dt.datetime) -> float:
        return (self.not_after - now).total_seconds() / 86400


@dataclass(frozen=True)
class ExpiryWarning:
    label: str
    subject: str
    not_after: dt.datetime
    days_left: float
    threshold: int  # 30, 7 or 1; 0 once expired

    @property
    def message(self) -> str:
        if self.threshold == 0:
            return f"certificate {self.label} ({self.subject}) expired on {self.not_after:%Y-%m-%d %H:%M} UTC"
        return (
            f"certificate {self.label} ({self.subject}) expires on {self.not_after:%Y-%m-%d %H:%M} UTC, "
            f"in {self.days_left:.1f} days (under {self.threshold})"
        )


def threshold_reached(days_left: float) -> int | None:
    """The smallest threshold at or above `days_left` (0 when expired), or None when none is reached."""
    if days_left <= 0:
        return 0
    reached = [t for t in THRESHOLDS_DAYS if days_left <= t]
    return min(reached) if reached else None


class ExpiryWatch:
    def __init__(self) -> None:
        self._warned: dict[tuple[str, dt.datetime], int] = {}

    def check(self, figures: list[CertFigure], now: dt.datetime) -> list[ExpiryWarning]:
        """Warnings for the thresholds crossed since the last check. A renewed certificate (new not_after)
        starts afresh."""
        warnings = []
        seen = set()
        for fig in figures:
            key = (fig.label, fig.not_after)
            seen.add(key)
            left = fig.days_left(now)
            level = threshold_reached(left)
            if level is None:
                continue
            previous = self._warned.get(key)
            if previous is None or level < previous:
                self._warned[key] = level
                warnings.append(ExpiryWarning(fig.label, fig.subject, fig.not_after, left, level))
        for key in set(self._warned) - seen:
            del self._warned[key]  # rotated away
        return warnings
