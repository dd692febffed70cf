"""Access policy: model, YAML loader, decision engine, host firewall.

Public API: `load_policy(paths)` / `load_policy_texts(...)` → `Policy`; `Policy.decide(Caller, infno, LocalTime)`
→ `Decision`; `RateLimiter`; `PolicyError` (positions), `PolicyDenied` (403 to the HIS).
"""

from .engine import Caller, Client, Decision, LocalTime, Policy, RateLimiter, Rule
from .errors import FirewallError, PolicyDenied, PolicyError
from .gate import Gate
from .loader import discover, load_policy, load_policy_texts

__all__ = [
    "Caller",
    "Client",
    "Decision",
    "FirewallError",
    "Gate",
    "LocalTime",
    "Policy",
    "PolicyDenied",
    "PolicyError",
    "RateLimiter",
    "Rule",
    "discover",
    "load_policy",
    "load_policy_texts",
]
