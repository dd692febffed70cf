"""The HIS-facing application: platform paths in, platform answers out, every refusal in platform shape."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from typing import Protocol

import structlog
from prometheus_client import Counter, Histogram

from gateway.errors import GatewayError, RequestError
from gateway.health.metrics import Metrics
from gateway.health.recent import Recent
from gateway.http1 import Request, Response
from gateway.http1.messages import Peer
from gateway.platform.completion import Completion
from gateway.platform.envelope import GBK, RequestEnvelope, charset_of, decode_request, describe
from gateway.policy.engine import Caller
from gateway.policy.gate import PolicyDenied, PolicyGate
from gateway.policy.model import ClientRule
from gateway.relay.answer import RelayAnswer

from .accesslog import AccessEntry, AccessLog
from .answers import DEFAULT_MODE, AnswerMode, failure_response, file_response
from .multipart import is_multipart, multipart_envelope
from .routes import PathMatch, PathTable

log = structlog.get_logger("gateway.api")

TIMEOUT_HEADER = "x-ybgate-timeout"
UTF8 = "utf-8"
#: the most label children HisApi keeps at hand per metric (transactions, upstreams: a few dozen in practice)
LABEL_CACHE = 1000


class Relay(Protocol):
    async def submit(self, envelope: RequestEnvelope, deadline: float, *, client: str | None = None) -> RelayAnswer: ...


class HisApi:
    def __init__(
        self,
        relay: Relay,
        paths: list[str],
        *,
        default_timeout: float,
        max_timeout: float,
        metrics: Metrics | None = None,
        recent: Recent | None = None,
        gate: PolicyGate | None = None,
        completion_values: Mapping[str, str] | None = None,
        signs_in: bool = False,
        access: AccessLog | None = None,
    ) -> None:
        self.relay = relay
        self.access = access or AccessLog("off")
        self.gate = gate or PolicyGate(None)
        self.metrics = metrics or Metrics()
        self._answered: dict[str, tuple[Counter, Histogram]] = {}
        self._upstreams: dict[str | None, Histogram] = {}
        self.recent = recent or Recent()
        self.configure(paths, default_timeout, max_timeout, completion_values, signs_in=signs_in)
        self.started = time.monotonic()

    def configure(
        self,
        paths: list[str],
        default_timeout: float,
        max_timeout: float,
        completion_values: Mapping[str, str] | None = None,
        *,
        signs_in: bool = False,
    ) -> None:
        """Swap the HIS-facing settings (on reload); each request sees either the old set or the new one."""
        self.paths = PathTable(paths)
        self.default_timeout = default_timeout
        self.max_timeout = max_timeout
        #: what the gateway completes envelopes with, for clients that ask (platform.completion)
        self.completion_values: Mapping[str, str] = dict(completion_values or {})
        self.signs_in = signs_in

    async def handle(self, request: Request) -> Response:
        caller = _caller(request.peer)
        client = self.gate.client_of(caller)
        mode: AnswerMode = _mode(client)
        if request.path == "/healthz":
            if request.method not in ("GET", "HEAD"):
                return self.refuse(RequestError("use GET for /healthz", http_status=405, kind="bad_method"), mode)
            doc = {"status": "ok", "uptime_s": round(time.monotonic() - self.started, 1)}
            return Response(200, json.dumps(doc).encode())
        started = time.perf_counter()
        match = self.paths.match(request.path)
        refused = self._misrouted(request, match, mode, client)
        if refused is not None:
            return refused
        assert match is not None
        envelope: RequestEnvelope | None = None
        try:
            timeout = self._timeout(request)
            envelope = self._decode(request, client, match)
            name = self._admit(request, caller, envelope)
            deadline = asyncio.get_running_loop().time() + timeout
            self.metrics.in_flight.inc()
            try:
                answer = await self.relay.submit(envelope, deadline, client=name)
            finally:
                self.metrics.in_flight.dec()
        except GatewayError as err:
            if envelope is not None:
                self.metrics.requests.labels(envelope.infno, err.kind).inc()
            log.warning(
                "request_failed",
                peer=request.peer.describe(),
                client=client.name if client is not None else None,
                kind=err.kind,
                reason=err.message,
                infno=envelope.infno if envelope else None,
                msgid=envelope.msgid if envelope else None,
                ms=round((time.perf_counter() - started) * 1000, 1),
            )
            infno, msgid = (envelope.infno, envelope.msgid) if envelope is not None else (None, None)
            response = self.refuse(
                err, mode, charset=envelope.charset if envelope else UTF8, infno=infno, msgid=msgid, client=client
            )
            self._access(
                request.peer, client, response, kind=err.kind, infno=infno, msgid=msgid, started=started, mode=mode
            )
            return response
        elapsed = time.perf_counter() - started
        self._count_answer(envelope.infno, answer.upstream, elapsed, answer.latency)
        self.recent.answer(elapsed)
        # no log event of its own: the access line is the record of every answered request
        response = file_response(envelope.infno, answer.response.fields) or self._answer(
            answer.response.body, envelope.charset
        )
        self._access(
            request.peer,
            client,
            response,
            infno=envelope.infno,
            msgid=envelope.msgid,
            started=started,
            infcode=answer.response.infcode,
            upstream=answer.upstream,
        )
        return response

    def _count_answer(self, infno: str, upstream: str | None, elapsed: float, latency: float | None) -> None:
        """The answered request's metrics, through label children looked up once per transaction and upstream
        (prometheus_client's labels() checks and locks on every call)."""
        children = self._answered.get(infno)
        if children is None:
            children = (self.metrics.requests.labels(infno, "answered"), self.metrics.request_seconds.labels(infno))
            if len(self._answered) < LABEL_CACHE:
                self._answered[infno] = children
        children[0].inc()
        children[1].observe(elapsed)
        if latency is not None:
            upstream_child = self._upstreams.get(upstream)
            if upstream_child is None:
                upstream_child = self.metrics.upstream_seconds.labels(upstream)
                if len(self._upstreams) < LABEL_CACHE:
                    self._upstreams[upstream] = upstream_child
            upstream_child.observe(latency)

    def _access(
        self,
        peer: Peer,
        client: ClientRule | None,
        response: Response,
        *,
        kind: str | None = None,
        infno: str | None = None,
        msgid: str | None = None,
        started: float | None = None,
        mode: AnswerMode = DEFAULT_MODE,
        infcode: int | str | None = None,
        upstream: str | None = None,
    ) -> None:
        """One access line. A refusal in platform shape carries infcode -1; in http_status mode, none."""
        ms = (time.perf_counter() - started) * 1000 if started is not None else 0.0
        if kind is not None and mode == DEFAULT_MODE:
            infcode = -1
        name = client.name if client is not None else None
        entry = AccessEntry(name, peer.describe(), infno, msgid, response.status, infcode, kind, upstream, ms)
        self.access.record(entry)

    def _decode(self, request: Request, client: ClientRule | None, match: PathMatch) -> RequestEnvelope:
        undeclared = GBK if client is not None and client.charset == "gbk" else UTF8
        content_type = request.headers.get("content-type")
        body = request.body
        if is_multipart(content_type):
            assert content_type is not None
            body, content_type = multipart_envelope(body, content_type), "application/json; charset=utf-8"
        charset = charset_of(content_type, undeclared)
        completion = (
            Completion(client.complete, self.completion_values, self.signs_in)
            if client is not None and client.complete
            else None
        )
        envelope = decode_request(body, charset=charset, path_infno=match.infno, completion=completion)
        # names only: the values may be personal
        if envelope.normalised:
            log.info("envelope_normalised", msgid=envelope.msgid, fields=list(envelope.normalised))
        if envelope.completed:
            assert client is not None
            log.info("envelope_completed", msgid=envelope.msgid, client=client.name, fields=list(envelope.completed))
            self.metrics.envelope_completions.labels(client.name).inc(len(envelope.completed))
        return envelope

    def early(self, head: Request) -> Response | None:
        """The final answer to a request refused by its head alone (a client waiting on Expect: 100-continue)."""
        if head.path == "/healthz":
            return None
        client = self.gate.client_of(_caller(head.peer))
        return self._misrouted(head, self.paths.match(head.path), _mode(client), client)

    def _misrouted(
        self, request: Request, match: PathMatch | None, mode: AnswerMode, client: ClientRule | None
    ) -> Response | None:
        if match is None:
            err = RequestError(f"no platform service at {request.path}", http_status=404, kind="bad_path")
        elif request.method != "POST":
            err = RequestError(f"use POST for {request.path}", http_status=405, kind="bad_method")
        else:
            return None
        response = self.refuse(err, mode, client=client)
        self._access(request.peer, client, response, kind=err.kind, mode=mode)
        return response

    def _admit(self, request: Request, caller: Caller, envelope: RequestEnvelope) -> str:
        """Who the caller is (its policy client name, or its peer without a policy); raises if refused."""
        peer = request.peer
        try:
            named = self.gate.check(caller, envelope.infno)
        except PolicyDenied as err:
            self.metrics.policy_denials.labels(err.kind, err.decision.client.name if err.decision.client else "").inc()
            raise
        return named or (f"uid={peer.uid}" if peer.uid is not None else peer.address or "unknown")

    def _timeout(self, request: Request) -> float:
        raw = request.headers.get(TIMEOUT_HEADER)
        if raw is None:
            return self.default_timeout
        try:
            value = float(raw)
        except ValueError:
            raise RequestError(f"{TIMEOUT_HEADER} must be seconds, got {describe(raw)}", kind="bad_timeout") from None
        if not 0 < value <= self.max_timeout:
            raise RequestError(f"{TIMEOUT_HEADER} must be in (0, {self.max_timeout}] seconds", kind="bad_timeout")
        return value

    @staticmethod
    def _answer(body: bytes, charset: str) -> Response:
        if charset == "utf-8":
            return Response(200, body)
        # Answer a GBK-speaking HIS in GBK: it decodes what it sent.
        return Response(200, body.decode("utf-8").encode(charset), content_type="application/json; charset=GBK")

    def refuse(
        self,
        err: GatewayError,
        mode: AnswerMode = DEFAULT_MODE,
        *,
        charset: str = "utf-8",
        infno: str | None = None,
        msgid: str | None = None,
        client: ClientRule | None = None,
    ) -> Response:
        """Answer a failure in platform shape. The HIS's own mistakes (4xx) are counted by kind here; upstream
        failures are counted per transaction where the relay was called."""
        # By the error's own wire meaning, not the HTTP status answered: platform-shaped answers are all 200.
        refused = err.http_status < 500
        if refused:
            self.metrics.refusals.labels(err.kind).inc()
        self.recent.error(err.kind, err.message, infno, msgid, refused=refused, client=client.name if client else None)
        return failure_response(err, mode, charset)

    def refuse_peer(self, err: RequestError, peer: Peer) -> Response:
        """A refusal found before a request could be read (bad HTTP, limits): in the shape the peer's client
        asked for."""
        client = self.gate.client_of(_caller(peer))
        mode = _mode(client)
        response = self.refuse(err, mode, client=client)
        self._access(peer, client, response, kind=err.kind, mode=mode)
        return response


def _caller(peer: Peer) -> Caller:
    return Caller(peer.uid, peer.gid, peer.address.rpartition(":")[0].strip("[]") if peer.address else None)


def _mode(client: ClientRule | None) -> AnswerMode:
    return "http_status" if client is not None and client.answer == "http_status" else DEFAULT_MODE
