"""The platform's callbacks: requests the province sends to the hospital, over a TLCP listener of ours,
handed to the HIS at a configured local address and answered with the HIS's answer.

The listener (built by the daemon) has already checked the caller: mutual TLCP with a certificate chained to
our CAs and a subject pinned by the policy (callback_peers). Here: only POST with a JSON body, the source
address among the policy's callback sources, one forward to the HIS per request (the HIS's answer is the
answer; the platform retries on its own if it gets none), and a platform-shaped refusal when the HIS cannot
be reached, so the platform hears "not processed" rather than a dropped connection.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import structlog

from gateway.errors import GatewayError, UpstreamError
from gateway.http1 import Request, Response
from gateway.http1.client import BadUpstreamResponse, ClientResponse, NoResponse, encode_request, exchange

log = structlog.get_logger("gateway.callback")


@dataclass(frozen=True)
class HisTarget:
    host: str
    port: int
    path: str
    timeout: float = 30.0


def _refusal(status: int, message: str) -> Response:
    body = {"infcode": -1, "err_msg": f"[ybgate] {message}", "output": None, "gateway_error": "callback"}
    return Response(status, json.dumps(body, ensure_ascii=False).encode("utf-8"))


class CallbackRelay:
    def __init__(
        self,
        target: HisTarget,
        sources: Sequence[str] = (),
        *,
        on_result: Callable[[str], None] | None = None,
    ) -> None:
        self.target = target
        self.sources = tuple(ipaddress.ip_network(s) for s in sources)
        self.on_result = on_result or (lambda result: None)

    def _source_allowed(self, address: str | None) -> bool:
        if not self.sources:
            return True
        if not address:
            return False
        try:
            ip = ipaddress.ip_address(address.rpartition(":")[0].strip("[]") or address)
        except ValueError:
            return False
        return any(ip in net for net in self.sources)

    async def handle(self, request: Request) -> Response:
        started = time.perf_counter()
        if not self._source_allowed(request.peer.address):
            self.on_result("refused_source")
            log.warning("callback_refused", reason="source", peer=request.peer.describe())
            return _refusal(403, "callback source not allowed by policy")
        if request.method != "POST":
            self.on_result("refused_method")
            return _refusal(405, "callbacks are POST")
        try:
            json.loads(request.body)
        except ValueError:
            self.on_result("refused_body")
            return _refusal(400, "callback body is not JSON")
        t = self.target
        raw = encode_request(
            "POST",
            f"{t.host}:{t.port}",
            t.path,
            [("Content-Type", request.headers.get("content-type") or "application/json"), ("Connection", "close")],
            request.body,
        )
        reply, failure = await self._forward(raw)
        if reply is None:
            self.on_result("his_unreachable")
            log.error("callback_his_unreachable", his=f"{t.host}:{t.port}{t.path}", reason=failure)
            return _refusal(502, f"HIS not reachable at {t.host}:{t.port} ({failure}); not processed")
        self.on_result("answered")
        log.info(
            "callback_answered",
            his_status=reply.status,
            bytes=len(request.body),
            ms=round((time.perf_counter() - started) * 1000, 1),
        )
        return Response(
            reply.status,
            reply.body,
            content_type=reply.headers.get("content-type") or "application/json; charset=utf-8",
        )

    async def _forward(self, raw: bytes) -> tuple[ClientResponse | None, str]:
        t = self.target
        try:
            async with asyncio.timeout(t.timeout):
                reader, writer = await asyncio.open_connection(t.host, t.port)
                try:
                    return await exchange(reader, writer, raw), ""
                finally:
                    writer.close()
        except (OSError, TimeoutError, NoResponse, BadUpstreamResponse, UpstreamError) as exc:
            return None, str(exc) or type(exc).__name__

    @staticmethod
    def refuse(err: GatewayError) -> Response:
        return _refusal(err.http_status, err.message)
