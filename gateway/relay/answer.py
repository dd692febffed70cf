"""What the relay hands back for a request: the platform's answer and where it came from.

A module of its own so that the HIS face can name the relay's answer without loading the relay's sending side
(and with it the tunnel): it depends on the platform envelope only.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.platform.envelope import ResponseEnvelope


@dataclass(frozen=True)
class RelayAnswer:
    response: ResponseEnvelope
    upstream: str
    latency: float | None  # seconds upstream; None for an answer read back from the outbox
