"""The simulator's listeners: the platform interface, and an admin endpoint for the ledger and faults."""

from __future__ import annotations

import asyncio
import collections
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import structlog

from gateway.http1 import Limits, Request, Response
from gateway.http1.listen import close_listener, start_tcp
from gateway.http1.messages import Peer, attachment
from gateway.http1.server import Abort, Http1Server
from gateway.net.tlcp_stream import start_tlcp_server
from gateway.platform.signing import TIF_NONCE, ProfileCodec, Refusal
from gateway.sim.clock import SettableClock
from gateway.sim.errors import platform_time
from gateway.sim.faults import UNPROCESSED, FaultTable
from gateway.sim.journal import Entry, Journal, JournalDamaged
from gateway.sim.ledger import Ledger, Message
from gateway.sim.platform import SimPlatform
from gateway.sim.statements import FileAnswer
from gateway.sim.tampering import Tampering
from gateway.tlcp import TLCPConfig

log = structlog.get_logger("gateway.sim")

GARBAGE = b"\x15\x03\x01\x00\x02\x02\x28 this is not an HTTP response\r\n\r\n"


def _json(status: int, doc: Any) -> Response:
    return Response(status, json.dumps(doc, ensure_ascii=False).encode("utf-8"))


@dataclass(frozen=True)
class SimAddresses:
    platform: tuple[str, int]
    admin: tuple[str, int]

    @property
    def admin_url(self) -> str:
        return f"http://{self.admin[0]}:{self.admin[1]}/_sim/"


class Simulator:
    def __init__(
        self, platform: SimPlatform | None = None, *, profile: ProfileCodec | None = None, journal: Path | None = None
    ) -> None:
        if platform is not None and journal is not None:
            raise ValueError("a journal replays through the simulator's own platform and clock: give one or the other")
        self.ledger = platform.ledger if platform else Ledger()
        #: the platform's clock, settable by admin call (a platform given by the caller keeps its own)
        self.clock = SettableClock()
        self.platform = platform or SimPlatform(self.ledger, clock=self.clock)
        #: the province profile this platform enforces and answers by (None: the plain national interface)
        self.profile = profile
        self._nonces: dict[str, float] = {}
        #: the last requests as they arrived on the wire (path, headers, body), for tests to inspect
        self.wire: collections.deque[tuple[str, dict[str, str], bytes]] = collections.deque(maxlen=100)
        self.faults = FaultTable()
        self._servers: list[asyncio.Server] = []
        self.addresses: SimAddresses | None = None
        #: every message received, on disk before it is answered (None: the ledger lives in memory only)
        self.journal = Journal(journal) if journal is not None else None
        if self.journal is not None:
            self._replay(self.journal)

    # -- the journal ----------------------------------------------------------------------------------------

    def _replay(self, journal: Journal) -> None:
        """Rebuild the ledger (and sign-ins, records, id counters) from the journal, in the order received."""
        for entry in journal.entries():
            message = Message(**entry.message)
            if entry.request is not None:
                with self.clock.pinned(entry.at):
                    answer = self.platform.process(entry.request)
                if int(answer["infcode"]) != message.infcode:
                    raise JournalDamaged(
                        f"{journal.path}: replaying {message.infno} {message.msgid} answered "
                        f"{answer['infcode']}, the journal says {message.infcode}"
                    )
            self.ledger.record(message)
        log.info("sim_replayed", journal=str(journal.path), messages=len(journal))

    def _record(self, message: Message, request: dict[str, Any] | None = None, at: float = 0.0) -> None:
        """Into the journal (on disk) first, then the ledger: what is answered is never forgotten."""
        if self.journal is not None:
            self.journal.append(Entry(at, asdict(message), request))
        self.ledger.record(message)

    # -- lifecycle ------------------------------------------------------------------------------------------

    async def start(
        self, host: str = "127.0.0.1", port: int = 0, admin_port: int = 0, *, tlcp: TLCPConfig | None = None
    ) -> SimAddresses:
        """Serve the platform interface (over TLCP when `tlcp` is given, as the real one) and the admin endpoint
        (plain HTTP on loopback: it is the test harness's, not the platform's)."""
        refuse = lambda err: _json(err.http_status, {"infcode": -1, "err_msg": err.message})  # noqa: E731
        self._http = [
            Http1Server(self.handle_platform, refuse, Limits()),
            Http1Server(self.handle_admin, refuse, Limits()),
        ]
        if tlcp is None:
            platform = await start_tcp(self._http[0], host, port)
        else:
            serve = self._http[0].serve

            async def on_tlcp(reader: asyncio.StreamReader, writer: Any) -> None:
                await serve(reader, writer, Peer(address="tlcp"))

            platform = await start_tlcp_server(on_tlcp, host, port, config=tlcp)
        admin = await start_tcp(self._http[1], host, admin_port)
        self._servers = [platform, admin]
        self.addresses = SimAddresses(platform.sockets[0].getsockname()[:2], admin.sockets[0].getsockname()[:2])
        log.info("sim_started", platform=self.addresses.platform, admin=self.addresses.admin_url, tlcp=tlcp is not None)
        return self.addresses

    async def stop(self) -> None:
        """Stop like a platform process going away: listeners and every open connection close."""
        for srv in self._servers:
            await close_listener(srv)
        for http in getattr(self, "_http", []):
            await http.drain(time.monotonic())
        self._servers = []
        self._http = []

    # -- the platform interface -----------------------------------------------------------------------------

    async def handle_platform(self, request: Request) -> Response:
        if request.method != "POST":
            return _json(405, {"infcode": -1, "err_msg": "仅支持POST请求"})
        self.wire.append((request.path, dict(request.headers.items), request.body))
        if self.profile is not None:
            try:
                doc = self._open(request)
            except Refusal as refusal:
                self._record(Message(0, "", "", -1, "profile_refused", time.time()))
                log.info("sim_refused", reason=refusal.message, path=request.path)
                return self._answer({"infcode": -1, "err_msg": refusal.message, "output": None})
        else:
            try:
                doc = json.loads(request.body.decode("utf-8"))
                if not isinstance(doc, dict):
                    raise TypeError("not an object")
            except (UnicodeDecodeError, ValueError, TypeError):
                self._record(Message(0, "", "", -1, None, time.time()))
                return _json(200, {"infcode": -1, "err_msg": "报文格式错误，无法解析", "output": None})
        infno, msgid = str(doc.get("infno", "")), str(doc.get("msgid", ""))
        fault = self.faults.take(infno)
        if fault is not None and fault.kind == "delay":
            await asyncio.sleep(fault.delay)
        if fault is not None and fault.kind in UNPROCESSED:
            return self._unprocessed(fault.kind, infno, msgid)
        with self.clock.pinned(self.clock()) as at:
            answer = self.platform.process(doc)
        kind = fault.kind if fault and fault.kind != "delay" else None
        seq = len(self.ledger.messages) + 1
        self._record(Message(seq, infno, msgid, int(answer["infcode"]), kind, time.time()), doc, at)
        if fault is not None and fault.kind == "drop_after":
            raise Abort()
        if fault is not None and fault.kind == "reset":
            raise Abort(reset=True)
        if fault is not None and fault.kind == "garbage":
            raise Abort(GARBAGE)
        return self._answer(answer)

    def _unprocessed(self, kind: str, infno: str, msgid: str) -> Response:
        """A fault that keeps the request from being processed: the message is recorded, nothing booked."""
        refused = kind == "refuse"
        self._record(Message(len(self.ledger.messages) + 1, infno, msgid, -1 if refused else None, kind, time.time()))
        if refused:
            return self._answer({"infcode": -1, "err_msg": "系统繁忙，请稍后重试", "output": None})
        if kind == "http502":
            return Response(502, b"<html><body>502 Bad Gateway</body></html>", content_type="text/html")
        raise Abort()

    def _open(self, request: Request) -> dict[str, Any]:
        """The plain envelope of a request that meets the profile; a TIF nonce is good once per window."""
        assert self.profile is not None
        now = self.platform.clock()
        headers = dict(request.headers.items)
        doc = self.profile.decode_request(request.path, headers, request.body, now=now)
        tif = self.profile.profile.tif
        nonce = headers.get(TIF_NONCE)
        if tif is not None and nonce is not None:
            self._nonces = {n: t for n, t in self._nonces.items() if t > now}
            if nonce in self._nonces:
                raise Refusal("网关校验失败：x-tif-nonce 重复，疑似重放请求")
            self._nonces[nonce] = now + 2 * tif.allowance
        return doc

    def _answer(self, answer: dict[str, Any]) -> Response:
        out = answer.get("output")
        if isinstance(out, FileAnswer):
            # 9102: the file itself, outside the profile's envelope and signing
            disposition = ("Content-Disposition", attachment(out.filename))
            return Response(200, out.data, content_type="application/octet-stream", headers=(disposition,))
        if self.profile is None:
            return _json(200, answer)
        headers, body = self.profile.encode_response(answer, now=self.platform.clock())
        content_type = next(v for k, v in headers if k == "Content-Type")
        return Response(
            200, body, content_type=content_type, headers=tuple(h for h in headers if h[0] != "Content-Type")
        )

    # -- admin ----------------------------------------------------------------------------------------------

    async def handle_admin(self, request: Request) -> Response:
        route = (request.method, request.path.rstrip("/"))
        if route == ("GET", "/_sim/ledger"):
            return _json(200, self.ledger.snapshot())
        if route == ("GET", "/_sim/faults"):
            return _json(200, self.faults.snapshot())
        if route == ("POST", "/_sim/faults"):
            try:
                spec = json.loads(request.body or b"{}")
                if not isinstance(spec, dict) or not spec:
                    raise ValueError("body must be an object {infno: {kind, delay?, times?}}")
                for infno, one in spec.items():
                    if not isinstance(one, dict):
                        raise TypeError(f"{infno}: fault must be an object")
                    self.faults.set(str(infno), one)
            except (ValueError, TypeError) as exc:
                return _json(400, {"error": str(exc)})
            return _json(200, self.faults.snapshot())
        if route == ("DELETE", "/_sim/faults"):
            self.faults.clear()
            return _json(200, {})
        if route == ("POST", "/_sim/expire-signins"):
            return _json(200, {"expired": self.platform.expire_signins()})
        if route[1] == "/_sim/recon" and route[0] in ("GET", "POST", "DELETE"):
            return self._recon(request)
        if route[1] == "/_sim/clock" and route[0] in ("GET", "POST", "DELETE"):
            return self._clock(request)
        if route == ("GET", "/_sim"):
            return _json(
                200,
                {
                    "endpoints": [
                        "GET /_sim/ledger",
                        "GET|POST|DELETE /_sim/faults",
                        "POST /_sim/expire-signins",
                        'GET|POST|DELETE /_sim/recon  {"lose": [setl_id], "alter": {setl_id: {field: value}}, '
                        '"phantom": [{infno, psn_no, medfee_sumamt, insutype, clr_type, setl_optins, booked_at}], '
                        '"undo": [setl_id], "only": "3201"|"3202"}',
                        'GET|POST|DELETE /_sim/clock  {"now": epoch | "yyyy-MM-dd HH:mm:ss"} or {"advance": s}',
                    ]
                },
            )
        return _json(404, {"error": f"no admin endpoint {request.method} {request.path}"})

    def _recon(self, request: Request) -> Response:
        if request.method == "POST":
            return self._tamper(request.body)
        if request.method == "DELETE":
            self.platform.statements.tampering = Tampering()
        return _json(200, self.platform.statements.snapshot())

    def _tamper(self, body: bytes) -> Response:
        """Differences for reconciliation to find, or undone: validated as a whole before any is applied."""
        statements = self.platform.statements
        keys = {"lose", "alter", "phantom", "undo", "only"}
        try:
            spec = json.loads(body or b"{}")
            if not isinstance(spec, dict) or not set(spec) - {"only"} or set(spec) - keys:
                raise ValueError('body must be an object with "lose", "alter", "phantom" and/or "undo" (and "only")')
            lose, alter, phantom = spec.get("lose", []), spec.get("alter", {}), spec.get("phantom", [])
            undo, only = spec.get("undo", []), spec.get("only")
            if not all(isinstance(x, list) for x in (lose, phantom, undo)) or not isinstance(alter, dict):
                raise TypeError("lose: [setl_id], alter: {setl_id: {field: value}}, phantom: [{...}], undo: [setl_id]")
            for setl_id in [*lose, *alter]:
                statements.known(str(setl_id))
            for changes in alter.values():
                Tampering.fields(dict(changes))
            for setl_id in undo:
                statements.tampering.undo(str(setl_id))
            for setl_id in lose:
                statements.lose(str(setl_id), only)
            for setl_id, changes in alter.items():
                statements.alter(str(setl_id), dict(changes), only)
            made = [statements.phantom(dict(one) | ({"only": only} if only else {})).setl_id for one in phantom]
        except (ValueError, TypeError) as exc:
            return _json(400, {"error": str(exc)})
        return _json(200, statements.snapshot() | {"made": made})

    def _clock(self, request: Request) -> Response:
        try:
            if request.method == "POST":
                spec = json.loads(request.body or b"{}")
                if not isinstance(spec, dict):
                    raise TypeError('body must be {"now": …} or {"advance": seconds}')
                self.clock.set(spec)
            elif request.method == "DELETE":
                self.clock.reset()
        except (ValueError, TypeError) as exc:
            return _json(400, {"error": str(exc)})
        now = self.platform.clock()
        return _json(200, {"now": now, "platform_time": platform_time(now), "offset": self.clock.offset})
