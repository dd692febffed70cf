"""The relay's timing: attempts, backoff and the settle time, shared by the live path and the resolution."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.backoff import backoff


@dataclass
class RelayTiming:
    max_attempts: int = 4
    backoff: float = 0.2  # the first pause between attempts, seconds
    backoff_max: float = 2.0  # the longest pause within the HIS's deadline
    resolve_backoff_max: float = 30.0  # the longest pause of a resolution (冲正, query) that outlives it
    min_attempt: float = 1.0  # the least time an attempt of a resendable request gets
    reversal_settle: float = 60.0  # until then after a doubt began, "nothing there" may not be the truth yet

    def pause(self, attempt: int) -> float:
        """Between attempts within the HIS's deadline."""
        return backoff(attempt, first=self.backoff, ceiling=self.backoff_max)

    def longest_pause(self, attempt: int) -> float:
        """The most `pause(attempt)` can draw: a retry is planned only when this still fits the deadline."""
        return backoff(attempt, first=self.backoff, ceiling=self.backoff_max, rng=lambda: 1.0)

    def resolve_pause(self, attempt: int) -> float:
        """Between the attempts of a resolution (冲正, query) that outlives the HIS's deadline."""
        return backoff(attempt, first=self.backoff, ceiling=self.resolve_backoff_max)
