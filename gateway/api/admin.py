"""The admin listener (loopback by default): Prometheus metrics, liveness, and a JSON status document."""

from __future__ import annotations

import json
from collections.abc import Callable
from importlib.resources import files
from typing import Any

from gateway.errors import RequestError
from gateway.health.metrics import CONTENT_TYPE, Metrics
from gateway.http1 import Request, Response

# Self-contained (inline CSS, JS, SVG): the 前置机 has no internet, so no CDN asset may be needed.
STATUS_PAGE = files("gateway.api").joinpath("status.html").read_bytes()


class AdminApi:
    def __init__(self, metrics: Metrics, status: Callable[[], dict[str, Any]]) -> None:
        self.metrics = metrics
        self.status = status

    async def handle(self, request: Request) -> Response:
        if request.method not in ("GET", "HEAD"):
            return self.refuse(RequestError("the admin endpoint is read-only: use GET", http_status=405))
        if request.path == "/":
            return Response(
                200,
                STATUS_PAGE,
                content_type="text/html; charset=utf-8",
                headers=(
                    (
                        "Content-Security-Policy",
                        "default-src 'self'; style-src 'unsafe-inline'; script-src 'unsafe-inline'",
                    ),
                ),
            )
        if request.path == "/metrics":
            return Response(200, self.metrics.render(), content_type=CONTENT_TYPE)
        if request.path == "/healthz":
            return Response(200, b'{"status": "ok"}')
        if request.path == "/status":
            return Response(200, json.dumps(self.status(), ensure_ascii=False, indent=1).encode("utf-8"))
        return self.refuse(RequestError(f"no admin endpoint {request.path}", http_status=404))

    @staticmethod
    def refuse(err: RequestError) -> Response:
        return Response(err.http_status, json.dumps({"error": err.message}).encode("utf-8"))
