"""`ybgate status`: the upstreams as ops need to see them — which one is active and why, each breaker, the last
success and failure with its cause, the route, and how often TLCP sessions are resumed."""

from __future__ import annotations

import time
from typing import Any

from gateway.relay.inspect import local_time


def _when(epoch: float | None, now: float) -> str:
    if epoch is None:
        return "never"
    return f"{local_time(epoch)} ({max(0.0, now - epoch):.0f} s ago)"


def _route(route: dict[str, Any] | None) -> str:
    if route is None:
        return "route not watched"
    via = route.get("via")
    if via is None:
        return "NO ROUTE"
    return f"route via {via}" + ("" if via == route.get("interface") else f" (not {route.get('interface')}!)")


def _sessions(handshakes: dict[str, int] | None) -> str:
    full, resumed = (handshakes or {}).get("full", 0), (handshakes or {}).get("resumed", 0)
    if not full + resumed:
        return "TLCP sessions: no handshake yet"
    return f"TLCP sessions: {resumed} of {full + resumed} handshakes resumed ({100 * resumed / (full + resumed):.0f} %)"


def upstream_lines(upstreams: list[dict[str, Any]], now: float | None = None) -> list[str]:
    """Three lines per upstream of the status document."""
    now = time.time() if now is None else now
    lines = []
    for u in upstreams:
        active = "ACTIVE" if u.get("active") else "standby"
        breaker = str(u.get("breaker", "?")).replace("_", "-")
        lines.append(
            f"upstream {u['name']} ({u['role']}, {active}): {u['transport']} {u['address']}  breaker {breaker}  "
            f"{_route(u.get('route'))}"
        )
        cause = u.get("last_failure_cause")
        failure = _when(u.get("last_failure"), now) + (f": {cause}" if cause else "")
        lines.append(f"  last success {_when(u.get('last_success'), now)}; last failure {failure}")
        if u["transport"] == "tlcp":
            lines.append(f"  {_sessions(u.get('tlcp_handshakes'))}")
    return lines
