"""The control socket: operations that change state, for ops on the 前置机 only.

A Unix socket in the runtime directory, mode 0600: only the service user (and root) can connect, and each
request's peer credentials are checked again, so nothing here is reachable from the hospital LAN or by
another local account. The admin listener stays read-only.
"""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from gateway.errors import GatewayError, RequestError
from gateway.http1 import Request, Response

log = structlog.get_logger("gateway.control")

Resolver = Callable[[str, str, str], Awaitable[dict[str, Any]]]
#: runs the reconciliation of a date (YYYY-MM-DD); GatewayError for a date it cannot take
Reconcile = Callable[[str], Awaitable[dict[str, Any]]]


class ControlApi:
    def __init__(
        self,
        resolve: Resolver,
        *,
        reload_policy: Callable[[], dict[str, Any]] | None = None,
        reconcile: Reconcile | None = None,
        allowed_uids: frozenset[int] | None = None,
    ) -> None:
        self.resolve = resolve
        self.reload_policy = reload_policy
        self.reconcile = reconcile
        self.allowed_uids = allowed_uids if allowed_uids is not None else frozenset({0, os.getuid()})

    async def handle(self, request: Request) -> Response:
        if request.peer.uid not in self.allowed_uids:
            return self.refuse(RequestError("the control socket is for the service user and root", http_status=403))
        if request.method == "POST" and request.path == "/policy/reload" and self.reload_policy is not None:
            log.warning("control_policy_reload", peer=request.peer.describe())
            result = self.reload_policy()
            status = 200 if result["result"] == "applied" else 422
            return Response(status, json.dumps(result, ensure_ascii=False).encode("utf-8"))
        if request.method == "POST" and request.path == "/recon/run":
            return await self._reconcile(request)
        if request.method != "POST" or request.path != "/outbox/resolve":
            return self.refuse(RequestError(f"no control operation {request.method} {request.path}", http_status=404))
        try:
            doc = json.loads(request.body)
            msgid, action, reason = str(doc["msgid"]), str(doc.get("action", "auto")), str(doc.get("reason", ""))
        except (ValueError, KeyError, TypeError):
            return self.refuse(RequestError('expected {"msgid": ..., "action": ..., "reason": ...}'))
        log.warning("control_resolve", msgid=msgid, action=action, peer=request.peer.describe())
        try:
            result = await self.resolve(msgid, action, reason)
        except GatewayError as err:
            return Response(err.http_status, json.dumps({"error": err.message}, ensure_ascii=False).encode("utf-8"))
        return Response(200, json.dumps(result, ensure_ascii=False).encode("utf-8"))

    async def _reconcile(self, request: Request) -> Response:
        if self.reconcile is None:
            return self.refuse(
                RequestError("reconciliation is not enabled (recon.enabled in the config)", http_status=409)
            )
        try:
            doc = json.loads(request.body)
            day = str(doc["date"])
        except (ValueError, KeyError, TypeError):
            return self.refuse(RequestError('expected {"date": "YYYY-MM-DD"}'))
        log.warning("control_recon_run", date=day, peer=request.peer.describe())
        try:
            result = await self.reconcile(day)
        except GatewayError as err:
            return Response(err.http_status, json.dumps({"error": err.message}, ensure_ascii=False).encode("utf-8"))
        return Response(200, json.dumps(result, ensure_ascii=False).encode("utf-8"))

    @staticmethod
    def refuse(err: RequestError) -> Response:
        return Response(err.http_status, json.dumps({"error": err.message}, ensure_ascii=False).encode("utf-8"))
