"""Relay v0: send one request to the platform within the HIS's deadline and bring back its answer.

The outcome of a failed send is classified by whether the request left: an unreachable upstream means the
platform never saw it (safe to say "not sent"); a failure after the request was written is ambiguous and is
reported as such — never guessed. Durable outbox, retries and resolution by query/冲正 build on this seam.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass

import structlog

from gateway.errors import UpstreamError, UpstreamTimeout
from gateway.http1.client import BadUpstreamResponse, encode_request, exchange
from gateway.net.pool import UpstreamPool
from gateway.net.transport import Transport, UpstreamTarget, UpstreamUnreachable
from gateway.platform.envelope import RequestEnvelope, ResponseEnvelope, decode_response

log = structlog.get_logger("gateway.relay")


class AmbiguousOutcome(UpstreamError):
    """The request left for the platform and no answer came back: it may or may not have been processed."""

    http_status = 504
    kind = "outcome_unknown"


@dataclass(frozen=True)
class RelayAnswer:
    response: ResponseEnvelope
    upstream: str
    latency: float


class Forwarder:
    def __init__(self, pool: UpstreamPool, transport: Transport) -> None:
        self.pool = pool
        self.transport = transport

    async def submit(self, envelope: RequestEnvelope, deadline: float) -> RelayAnswer:
        """`deadline` is a loop time; past it the HIS gets a timeout answer whatever state the send is in."""
        loop = asyncio.get_running_loop()
        errors: list[str] = []
        candidates = self.pool.candidates()
        if not candidates:
            raise UpstreamError("every upstream's circuit breaker is open: request not sent; try again shortly")
        # A connection failure moves on to the next upstream: nothing was sent, so any transaction may.
        for target in candidates:
            if deadline - loop.time() <= 0:
                break
            if not self.pool.acquire(target):
                continue
            started = time.perf_counter()
            try:
                async with asyncio.timeout_at(deadline):
                    reader, writer = await self.transport.open(target)
            except UpstreamUnreachable as exc:
                self.pool.report(target, ok=False)
                errors.append(exc.message)
                log.warning("upstream_unreachable", upstream=target.name, reason=exc.message, msgid=envelope.msgid)
                continue
            except TimeoutError:
                self.pool.report(target, ok=False)
                errors.append(f"{target.name}: deadline passed while connecting")
                break
            try:
                response = await self._exchange(target, envelope, reader, writer, deadline)
            except AmbiguousOutcome:
                self.pool.report(target, ok=False)
                raise
            finally:
                writer.close()
                with contextlib.suppress(ConnectionError, OSError):
                    await writer.wait_closed()
            self.pool.report(target, ok=True)
            return RelayAnswer(response, target.name, time.perf_counter() - started)
        raise UpstreamError("platform not reachable, request not sent: " + "; ".join(errors or ["deadline passed"]))

    async def _exchange(
        self,
        target: UpstreamTarget,
        envelope: RequestEnvelope,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        deadline: float,
    ) -> ResponseEnvelope:
        request = encode_request(
            "POST",
            f"{target.host}:{target.port}",
            target.path_for(envelope.infno),
            [("Content-Type", "application/json;charset=utf-8"), ("Connection", "close")],
            envelope.body,
        )
        try:
            async with asyncio.timeout_at(deadline):
                reply = await exchange(reader, writer, request)
        except TimeoutError:
            raise UpstreamTimeout(
                f"no answer from {target.name} before the deadline; the request was sent and its outcome is unknown"
            ) from None
        except (ConnectionError, BadUpstreamResponse) as exc:
            raise AmbiguousOutcome(
                f"{target.name} dropped the exchange after the request was sent ({exc}); outcome unknown"
            ) from None
        if reply.status != 200:
            raise AmbiguousOutcome(
                f"{target.name} answered HTTP {reply.status} instead of a platform answer; outcome unknown"
            )
        try:
            return decode_response(reply.body)
        except ValueError as exc:
            raise AmbiguousOutcome(f"{target.name} sent an unreadable answer ({exc}); outcome unknown") from None
