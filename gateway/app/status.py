"""The daemon's status document: what `ybgate status`, the status page and the MQTT health message show."""

from __future__ import annotations

import time
from typing import Any

from gateway import __version__
from gateway.app.link import LinkWatch
from gateway.app.listeners import HisListeners
from gateway.app.upstreams import Upstreams
from gateway.config import Config
from gateway.health.checks import HealthChecks
from gateway.health.recent import Recent
from gateway.policy.gate import PolicyGate


def status_document(
    config: Config,
    *,
    started_at: float,
    link_watch: LinkWatch | None,
    upstreams: Upstreams | None,
    his: HisListeners | None,
    recent: Recent,
    gate: PolicyGate,
    checks: HealthChecks | None,
) -> dict[str, Any]:
    link = link_watch.state if link_watch is not None else None
    snapshots = upstreams.snapshot() if upstreams is not None else [{} for _ in config.upstreams]
    return {
        "version": __version__,
        "uptime_s": round(time.monotonic() - started_at, 1),
        "in_flight": his.http.in_flight if his else 0,
        "api_socket": str(config.api_socket),
        "link": None if link is None else {"interface": link.interface, "up": link.up, "routes": link.routes},
        "upstreams": [
            {"name": u.name, "role": u.role, "address": f"{u.host}:{u.port}", "transport": u.transport}
            | {k: v for k, v in snap.items() if k not in ("name", "role")}
            | {"route": _route(link_watch, u.host)}
            for u, snap in zip(config.upstreams, snapshots, strict=True)
        ],
        "recent": recent.snapshot(),
        "policy": None if gate.policy is None else {"version": gate.policy.version, "files": list(gate.policy.files)},
    } | (checks.status() if checks is not None else {})


def _route(link_watch: LinkWatch | None, host: str) -> dict[str, Any] | None:
    """The interface the route to an upstream leaves by, and the one it should (None: no link watched)."""
    if link_watch is None or link_watch.state is None:
        return None
    return {"via": link_watch.state.routes.get(host), "interface": link_watch.state.interface}
