"""The access policy as a part: loaded and checked against the upstreams before anything listens, the nftables
table applied from it, its reload (a bad one is refused and the one in force stays), and the firewall drift watch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import structlog

from gateway.app.events import EventSink
from gateway.config import Config
from gateway.health.metrics import Metrics
from gateway.policy.engine import upstream_allowed
from gateway.policy.firewall import FirewallError
from gateway.policy.gate import PolicyGate
from gateway.policy.loader import PolicyError, load_policy
from gateway.policy.model import Policy
from gateway.policy.nft import Firewall, Nft

log = structlog.get_logger("gateway.daemon")


class PolicyPart:
    name = "policy"

    def __init__(self, config: Callable[[], Config], metrics: Metrics, events: EventSink) -> None:
        self._config = config  # the configuration in force (a reload may change the policy paths)
        self.metrics, self.events = metrics, events
        self.gate = PolicyGate(None)
        self.firewall: Firewall | None = None

    async def start(self) -> None:
        cfg = self._config()
        # The policy first: a start with a bad policy (or an upstream outside it) stops before anything listens.
        self.gate = PolicyGate(self._load(cfg))
        fw = cfg.policy.firewall if cfg.policy is not None else None
        if fw is None or not fw.enabled or not fw.interface or self.gate.policy is None:
            return
        # The host is closed off before anything listens; a table nft refuses stops the start. On stop the
        # table stays: the host remains closed while the gateway restarts.
        self.firewall = Firewall(Nft(), fw.interface)
        seen = self.firewall.apply(self.gate.policy)
        log.info("firewall_applied", interface=fw.interface, rules=len(seen.skeleton))

    async def stop(self) -> None:
        return None  # the policy holds nothing open, and the firewall table stays (see start)

    def _load(self, cfg: Config) -> Policy | None:
        """The policy the configuration names, checked against the upstreams it will dial. Raises PolicyError."""
        paths = cfg.policy_paths
        if paths is None:
            log.warning("no_policy", detail="development mode without a policy: every local client may call everything")
            return None
        policy = load_policy(paths)
        outside = [f"{u.name} {u.host}:{u.port}" for u in cfg.upstreams if not upstream_allowed(policy, u.host, u.port)]
        if outside:
            raise PolicyError(
                [
                    (
                        None,
                        "upstreams",
                        f"not in the policy's upstream whitelist: {', '.join(outside)} (policy files: "
                        f"{', '.join(policy.files)}); only whitelisted IP:port pairs are ever dialled",
                    )
                ]
            )
        self.metrics.policy_info.clear()
        self.metrics.policy_info.labels(policy.version).set(1)
        log.info("policy_loaded", version=policy.version, files=list(policy.files), clients=len(policy.clients))
        return policy

    def reload(self) -> dict[str, Any]:
        """Load the policy again; a bad one is refused and the one in force stays."""
        refused: PolicyError | None = None
        try:
            policy = self._load(self._config())
            if self.firewall is not None and policy is not None:
                # The kernel first: if nft refuses, the old table (rolled back) and the old policy stay.
                self.firewall.apply(policy)
        except PolicyError as err:
            refused = err
        except FirewallError as err:
            refused = PolicyError([(None, "firewall", err.message)])
        if refused is not None:
            self.metrics.policy_reloads.labels("refused").inc()
            log.error("policy_refused", problems=refused.lines())
            self.events.emit("policy_refused", {"problems": refused.lines()}, error=refused.lines()[0])
            return {"result": "refused", "problems": refused.lines()}
        if policy is not None:
            self.gate.swap(policy)
        self.metrics.policy_reloads.labels("applied").inc()
        return {"result": "applied", "version": policy.version if policy else None}


class FirewallDrift:
    """Reads the table back every interval; an edit, flush or deletion by anyone is drift, reported (metrics, log,
    events) but not silently undone: `ybgate firewall apply` or a reload puts it back."""

    name = "firewall-drift"

    def __init__(self, firewall: Firewall, interval: float, metrics: Metrics, events: EventSink) -> None:
        self.firewall, self.interval, self.metrics, self.events = firewall, interval, metrics, events

    async def run(self) -> None:
        was_ok = True
        while True:
            await asyncio.sleep(self.interval)
            try:
                check = await asyncio.to_thread(self.firewall.check)
            except FirewallError as err:
                self.metrics.firewall_checks.labels("error").inc()
                log.warning("firewall_check_failed", reason=err.message)
                continue
            self.metrics.firewall_drops.labels("in").set(check.seen.dropped_in)
            self.metrics.firewall_drops.labels("out").set(check.seen.dropped_out)
            self.metrics.firewall_drift.set(0 if check.ok else 1)
            self.metrics.firewall_checks.labels("ok" if check.ok else "drift").inc()
            if not check.ok and was_ok:
                log.error("firewall_drift", problem=check.problem, interface=self.firewall.interface)
                self.events.emit("firewall_drift", {"problem": check.problem}, error=check.problem or "")
            elif check.ok and not was_ok:
                log.info("firewall_drift_resolved", interface=self.firewall.interface)
            was_ok = check.ok
