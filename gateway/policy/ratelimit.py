"""Token buckets for the policy's rate limits: per client, and per transaction over all clients.

Time is passed in (monotonic seconds), so the buckets are tested without sleeping. Buckets are keyed by
name and rebuilt when a reload changes a rate; an idle bucket is full, so dropping them is harmless.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.policy.model import RateSpec


@dataclass
class _Bucket:
    spec: RateSpec
    tokens: float
    at: float


class RateLimiter:
    def __init__(self, max_keys: int = 100_000) -> None:
        self._buckets: dict[str, _Bucket] = {}
        self.max_keys = max_keys

    def take(self, key: str, spec: RateSpec, now: float) -> bool:
        """Take one token from `key`'s bucket; False when it is empty (the request is refused)."""
        bucket = self._buckets.get(key)
        if bucket is None or bucket.spec != spec:
            if len(self._buckets) >= self.max_keys:
                self._buckets.clear()  # bounded memory; an emptied bucket only errs towards allowing
            bucket = self._buckets[key] = _Bucket(spec, float(spec.burst), now)
        elapsed = max(0.0, now - bucket.at)
        bucket.tokens = min(float(spec.burst), bucket.tokens + elapsed * spec.per_second)
        bucket.at = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return True
        return False
