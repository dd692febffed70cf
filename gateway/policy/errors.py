"""Policy errors, each with its wire meaning: ops get positions, the HIS gets a 403 in platform shape."""

from __future__ import annotations

from gateway.errors import ConfigError, GatewayError


class PolicyError(ConfigError):
    """A policy file (or the set of them) is wrong; every problem has file:line:column and the field."""

    kind = "policy"


class PolicyDenied(GatewayError):
    """The policy refuses this request; the message names the client and the rule that denied it.

    A rate limit is 429 (come back later), anything else 403 (this caller may not do this)."""

    http_status = 403
    kind = "policy_denied"

    def __init__(self, message: str, *, rate_limited: bool = False) -> None:
        super().__init__(message)
        if rate_limited:
            self.http_status = 429
            self.kind = "rate_limited"


class FirewallError(GatewayError):
    """nftables refused the ruleset, or what the kernel holds is not what was applied."""

    kind = "firewall"
