"""The policy in force, swapped whole on reload, and the check every HIS request passes before the outbox.

A denied request never reaches the outbox or the platform; the HIS hears which rule refused it.
"""

from __future__ import annotations

import time
from datetime import datetime

from gateway.errors import GatewayError
from gateway.policy.engine import Caller, Decision, decide, find_client
from gateway.policy.model import ClientRule, Policy
from gateway.policy.ratelimit import RateLimiter


class PolicyDenied(GatewayError):
    http_status = 403
    kind = "policy_denied"

    def __init__(self, decision: Decision) -> None:
        super().__init__(f"策略拒绝 (policy): {decision.reason}")
        self.decision = decision


class MaintenanceWindow(PolicyDenied):
    http_status = 503
    kind = "maintenance"


class RateLimited(GatewayError):
    http_status = 429
    kind = "rate_limited"


class PolicyGate:
    def __init__(self, policy: Policy | None) -> None:
        #: None: no policy configured (development only) — everything is allowed, and the status says so
        self.policy = policy
        self.limiter = RateLimiter()

    def swap(self, policy: Policy) -> None:
        self.policy = policy  # one assignment: a request sees the old policy or the new one, never a mix

    def client_of(self, caller: Caller) -> ClientRule | None:
        """The policy client the caller is, before anything else is known (its answer shape and charset)."""
        policy = self.policy
        return None if policy is None else find_client(policy, caller)

    def check(
        self, caller: Caller, infno: str, *, now: float | None = None, local: datetime | None = None
    ) -> str | None:
        """The name of the policy client the caller is (None: no policy in force); raises if refused."""
        policy = self.policy
        if policy is None:
            return None
        local = local or datetime.now()
        decision = decide(policy, caller, infno, local.weekday(), local.hour * 60 + local.minute)
        if not decision.allowed:
            raise (MaintenanceWindow if decision.kind == "maintenance" else PolicyDenied)(decision)
        now = time.monotonic() if now is None else now
        client = decision.client
        assert client is not None
        if client.rate is not None and not self.limiter.take(f"client:{client.name}", client.rate, now):
            raise RateLimited(
                f"请求过于频繁 (rate limit): client {client.name} is limited to {client.rate.per_second:g}/s "
                f"(burst {client.rate.burst}) by {client.position}"
            )
        for rule in policy.rates:
            if infno in rule.infnos and not self.limiter.take(f"infno:{rule.key}", rule.rate, now):
                raise RateLimited(
                    f"请求过于频繁 (rate limit): {infno} is limited to {rule.rate.per_second:g}/s over all clients "
                    f"(burst {rule.rate.burst}) by {rule.position}"
                )
        return client.name
