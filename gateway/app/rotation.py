"""Certificate rotation across the parts that hold the identity: the upstream tunnels, the callback listener, the
audit signer. The identity files are loaded and checked once, as `certs check` would; every holder prepares its
switch from them (anything refused is refused before any holder switches), then all switch, each logging it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal, Protocol

import structlog

from gateway.app.events import EventSink
from gateway.config import Identity
from gateway.errors import GatewayError
from gateway.health.metrics import Metrics
from gateway.identity import LoadedIdentity, load_identity

log = structlog.get_logger("gateway.daemon")


class Holder(Protocol):
    def prepare_identity(self, ident: LoadedIdentity) -> Callable[[], None]:
        """Build what the new identity needs (raising on what is refused); return what switches to it."""
        ...


def rotate(
    identity: Identity, holders: Sequence[Holder], metrics: Metrics, events: EventSink
) -> Literal["applied", "refused"]:
    """Hand the identity as the files are now to every holder, or to none: a bad set keeps the running one."""
    reason = None
    try:
        ident = load_identity(identity)
        switches = [h.prepare_identity(ident) for h in holders]
    except (GatewayError, OSError, ValueError) as exc:
        reason = getattr(exc, "message", None) or str(exc)
    if reason is not None:
        metrics.reloads.labels("identity_refused").inc()
        log.error("identity_refused", reason=reason)
        events.emit("identity_refused", {"reason": reason}, error=reason)
        return "refused"
    for switch in switches:
        switch()
    return "applied"
