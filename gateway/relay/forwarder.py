"""The forwarder: one attempt to send a request to the platform within its deadline, over the upstream the
failover picks (UpstreamFailover) and a connection of the keep-alive pool (KeepAlivePool), and its answer back.

The outcome of a failed attempt is classified by whether the request left: an unreachable upstream means the
platform never saw it (safe to say "not sent"); a failure after the request was written is ambiguous and is
reported as such — never guessed. The durable relay (durable.py) owns retries and resolution by query/冲正.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable, Mapping

import structlog

from gateway.errors import UpstreamError, UpstreamTimeout
from gateway.http1.client import BadUpstreamResponse, ClientResponse, NoResponse, encode_request, exchange
from gateway.http1.messages import attachment_filename
from gateway.net.connections import Connection, KeepAlivePool
from gateway.net.dialer import RACE_AFTER, Dialer, NoConnection
from gateway.net.pool import UpstreamFailover
from gateway.net.transport import UpstreamTarget, UpstreamUnreachable, link_dead
from gateway.platform.envelope import RequestEnvelope, ResponseEnvelope
from gateway.platform.profile import Profile
from gateway.platform.signing import OutboundRequest, ProfileCodec, ProfileKeys, UntrustedAnswer
from gateway.platform.stmtfiles import DOWNLOAD_INFNO, file_answer, is_file_answer
from gateway.relay.answer import RelayAnswer

#: the plain national interface: what an upstream without a profile gets (the HIS's bytes as they are)
PLAIN = ProfileCodec(Profile("national"), ProfileKeys())

log = structlog.get_logger("gateway.relay")


class AmbiguousOutcome(UpstreamError):
    """The request left for the platform and no answer came back: it may or may not have been processed."""

    http_status = 504
    kind = "outcome_unknown"


class LinkDead(AmbiguousOutcome):
    """The connection died under the request (the kernel's TCP_USER_TIMEOUT or keepalive): the link is gone."""


def never_reuse(_: RequestEnvelope) -> bool:
    return False


class Forwarder:
    """Sends each request over a connection from `connections`; `reusable` says per request whether an idle
    keep-alive connection may carry it (only where a stale connection's ambiguity is harmless). `codecs` holds
    each upstream's province profile (by upstream name): the outbox keeps the HIS's plain envelope and the
    profile is applied here, per send, so TIF timestamps and nonces are fresh on every attempt."""

    def __init__(
        self,
        pool: UpstreamFailover,
        connections: KeepAlivePool,
        reusable: Callable[[RequestEnvelope], bool] = never_reuse,
        *,
        codecs: Mapping[str, ProfileCodec] | None = None,
        clock: Callable[[], float] = time.time,
        on_skew: Callable[[str, float], None] | None = None,
        race_after: float = RACE_AFTER,
    ) -> None:
        self.pool = pool
        self.connections = connections
        self.reusable = reusable
        self.codecs: Mapping[str, ProfileCodec] = codecs or {}
        self.clock = clock
        self.on_skew = on_skew
        self.dialer = Dialer(pool, connections, race_after=race_after)

    def _codec(self, target: UpstreamTarget) -> ProfileCodec:
        return self.codecs.get(target.name, PLAIN)

    def _encode(self, target: UpstreamTarget, envelope: RequestEnvelope) -> OutboundRequest:
        codec = self._codec(target)
        # a nonce only where the profile sends one (TIF): otherwise a getrandom call per request for nothing
        nonce = secrets.token_hex(16) if codec.profile.tif is not None else ""
        return codec.encode_request(envelope, base_path=target.path_for(envelope.infno), now=self.clock(), nonce=nonce)

    async def submit(self, envelope: RequestEnvelope, deadline: float) -> RelayAnswer:
        """`deadline` is a loop time; past it the HIS gets a timeout answer whatever state the send is in."""
        candidates = self.pool.candidates()
        if not candidates:
            raise UpstreamError("every upstream's circuit breaker is open: request not sent; try again shortly")
        reuse = self.reusable(envelope)
        # Encoded before connecting: a request the profile cannot carry never takes a connection.
        first = self._encode(candidates[0], envelope)
        started = time.perf_counter()
        # A connection failure moves on to the next upstream (a hung connect is raced by it): nothing was sent,
        # so any transaction may.
        try:
            ticket, conn = await self.dialer.connect(candidates, reuse=reuse, deadline=deadline)
        except NoConnection as exc:
            log.warning("upstream_unreachable", reason=exc.message, msgid=envelope.msgid)
            raise UpstreamError(f"platform not reachable, request not sent: {exc.message}") from None
        except TimeoutError:
            raise UpstreamError("platform not reachable, request not sent: deadline passed while connecting") from None
        target = conn.target
        try:
            outbound = first if target == candidates[0] else self._encode(target, envelope)
        except BaseException:
            self.pool.release(ticket)
            await self.connections.put(conn, keep=reuse)
            raise
        try:
            response = await self._send(conn, envelope, outbound, deadline, reuse)
        except LinkDead as exc:
            self.pool.trip(target.name, exc.message)
            raise
        except (AmbiguousOutcome, UpstreamTimeout, UpstreamUnreachable) as exc:
            # a silent upstream counts against its breaker too, as does a failed fresh connect after a stale one
            self.pool.report(ticket, ok=False, cause=exc.message)
            raise
        except BaseException:
            self.pool.release(ticket)
            raise
        self.pool.report(ticket, ok=True, served=True)
        return RelayAnswer(response, target.name, time.perf_counter() - started)

    async def _send(
        self, conn: Connection, envelope: RequestEnvelope, outbound: OutboundRequest, deadline: float, reuse: bool
    ) -> ResponseEnvelope:
        try:
            reply = await self._exchange(conn, outbound, deadline, keep_alive=reuse)
        except NoResponse:
            if not conn.reused:
                raise self._no_answer(conn) from None
            # Reuse is only allowed where a resend is harmless: a stale idle connection gets one fresh retry.
            log.info("stale_connection_retried", upstream=conn.target.name, msgid=envelope.msgid)
            async with asyncio.timeout_at(deadline):
                conn = await self.connections.get(conn.target, reuse=False)
            try:
                # A fresh TIF timestamp and nonce: the platform may have seen the first nonce.
                reply = await self._exchange(conn, self._encode(conn.target, envelope), deadline, keep_alive=reuse)
            except NoResponse:
                raise self._no_answer(conn) from None
        await self.connections.put(conn, keep=reuse and reply.keep_alive)
        if reply.status != 200:
            raise AmbiguousOutcome(
                f"{conn.target.name} answered HTTP {reply.status} instead of a platform answer; outcome unknown"
            )
        headers = dict(reply.headers.items)
        if envelope.infno == DOWNLOAD_INFNO and is_file_answer(_header(headers, "content-type")):
            # 9102 answers with the file itself: outside any profile's signing, and not an envelope.
            return file_answer(reply.body, attachment_filename(_header(headers, "content-disposition")) or "download")
        try:
            answer = self._codec(conn.target).decode_response(reply.body, headers, now=self.clock())
        except UntrustedAnswer as exc:
            log.error(  # noqa: TRY400 - the reason is the message; a traceback adds nothing
                "untrusted_answer", upstream=conn.target.name, reason=exc.message, msgid=envelope.msgid
            )
            raise AmbiguousOutcome(
                f"{conn.target.name} sent an answer that cannot be trusted ({exc.message}); outcome unknown"
            ) from None
        if answer.skew is not None and self.on_skew is not None:
            self.on_skew(conn.target.name, answer.skew)
        if answer.skew_warning:
            log.warning(
                "platform_clock_skew",
                upstream=conn.target.name,
                skew_s=round(answer.skew or 0.0, 1),
                hint="check NTP on this host: the platform refuses requests stamped too far from its clock",
            )
        return answer.envelope

    @staticmethod
    def _no_answer(conn: Connection) -> AmbiguousOutcome:
        return AmbiguousOutcome(
            f"{conn.target.name} closed the connection after the request was sent, without an answer; outcome unknown"
        )

    async def _exchange(
        self, conn: Connection, outbound: OutboundRequest, deadline: float, *, keep_alive: bool
    ) -> ClientResponse:
        """One request/response on `conn`. On any failure the connection is closed (its framing is lost) and the
        failure is told by what it means: NoResponse (nothing came back), or an unknown outcome."""
        target = conn.target
        request = encode_request(
            "POST",
            f"{target.host}:{target.port}",
            outbound.path,
            [*outbound.headers, ("Connection", "keep-alive" if keep_alive else "close")],
            outbound.body,
        )
        try:
            async with asyncio.timeout_at(deadline):
                return await exchange(conn.reader, conn.writer, request)
        except NoResponse:
            await self.connections.put(conn, keep=False)
            raise
        except TimeoutError as exc:
            await self.connections.put(conn, keep=False)
            if link_dead(exc):
                raise LinkDead(
                    f"{target.name} stopped answering: the kernel gave up on the connection after "
                    f"{target.dead_after:g} s of silence; outcome unknown"
                ) from None
            raise UpstreamTimeout(
                f"no answer from {target.name} before the deadline; the request was sent and its outcome is unknown"
            ) from None
        except (ConnectionError, BadUpstreamResponse) as exc:
            await self.connections.put(conn, keep=False)
            raise AmbiguousOutcome(
                f"{target.name} dropped the exchange after the request was sent ({exc}); outcome unknown"
            ) from None
        except asyncio.CancelledError:
            await self.connections.put(conn, keep=False)
            raise


def _header(headers: Mapping[str, str], name: str) -> str | None:
    return next((v for k, v in headers.items() if k.lower() == name), None)
