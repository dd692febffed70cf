"""An HTTP/1.1 server connection loop over asyncio streams, with limits against slow and oversized clients."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import time
from collections.abc import Awaitable, Callable
from http import HTTPStatus

import httptools
import structlog

from gateway.errors import RequestError
from gateway.http1.messages import Limits, Peer, Request, Response
from gateway.http1.parse import RequestParse

log = structlog.get_logger("gateway.http1")

Handler = Callable[[Request], Awaitable[Response]]
#: builds the body for errors found before a handler runs (the API answers in the platform's shape)
ErrorResponder = Callable[[RequestError], Response]
#: the same, for a server whose answer depends on who the peer is (the HIS API: each client's answer mode)
PeerErrorResponder = Callable[[RequestError, Peer], Response]
#: decides from a request's head alone (its body not read yet, empty here) whether it is refused: the final
#: answer to a client waiting on "Expect: 100-continue", or None to let the body come
EarlyResponder = Callable[[Request], Response | None]
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class Abort(Exception):
    """Raised by a handler to end the connection instead of answering: after writing `raw` (may be empty),
    close it, with a TCP reset when `reset` is set. The simulator uses it to play a broken platform."""

    def __init__(self, raw: bytes = b"", *, reset: bool = False) -> None:
        super().__init__("connection aborted by handler")
        self.raw = raw
        self.reset = reset


def encode_response(response: Response, *, keep_alive: bool) -> bytes:
    try:
        reason = HTTPStatus(response.status).phrase
    except ValueError:
        reason = "Status"
    head = [
        f"HTTP/1.1 {response.status} {reason}",
        f"Content-Type: {response.content_type}",
        f"Content-Length: {len(response.body)}",
        "Connection: keep-alive" if keep_alive else "Connection: close",
    ]
    head.extend(f"{k}: {v}" for k, v in response.headers)
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + response.body


class Http1Server:
    """Serves HTTP/1.1 connections; tracks them so a stop can drain in-flight requests."""

    def __init__(
        self,
        handler: Handler,
        error_responder: ErrorResponder,
        limits: Limits,
        *,
        peer_error_responder: PeerErrorResponder | None = None,
        early_responder: EarlyResponder | None = None,
    ) -> None:
        self.handler = handler
        self.error_responder = error_responder
        self.peer_error_responder = peer_error_responder
        self.early_responder = early_responder
        self.limits = limits
        self._busy: set[asyncio.Task[None]] = set()
        # connection task -> its parse state; the state tells an idle keep-alive connection from a new one
        self._conns: dict[asyncio.Task[None], RequestParse] = {}
        self._served: dict[asyncio.Task[None], int] = {}
        self._closing = False

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: Peer) -> None:
        state = RequestParse(self.limits)
        task = asyncio.current_task()
        assert task is not None
        self._conns[task] = state
        self._served[task] = 0
        try:
            await self._loop(reader, writer, peer, state)
        except (ConnectionError, asyncio.IncompleteReadError):
            return  # the client went away mid-connection: there is no one left to answer
        finally:
            self._conns.pop(task, None)
            self._served.pop(task, None)
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()

    async def _loop(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: Peer, state: RequestParse
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        while not (self._closing and self._served[task]):
            refusal: RequestError | None = None
            try:
                await self._read_request(reader, writer, peer, state)
            except _AnsweredEarly as early:
                await self._write(writer, early.response, keep_alive=False)
                return
            except RequestError as err:
                refusal = err
            except httptools.HttpParserError as exc:
                refusal = RequestError(f"malformed HTTP request: {exc}", kind="bad_http")
            if refusal is None and not state.done:
                return  # clean EOF or idle timeout between requests
            # Requests that were complete before the bad bytes in the same read are owed their answers first,
            # in order: their client did nothing wrong, and a pipelining client matches answers by position.
            while state.done:
                req = state.done.pop(0)
                request = Request(req.method, req.path, req.headers, req.body, peer, req.keep_alive)
                try:
                    response = await self._handle(request, task)
                except Abort as abort:
                    await self._abort(writer, abort)
                    return
                self._served[task] += 1
                keep = request.keep_alive and not self._closing
                await self._write(writer, response, keep_alive=keep)
                if not keep:
                    return
            if refusal is not None:
                log.warning("http_request_refused", peer=peer.describe(), kind=refusal.kind, reason=refusal.message)
                if self.peer_error_responder is not None:
                    answer = self.peer_error_responder(refusal, peer)
                else:
                    answer = self.error_responder(refusal)
                await self._write(writer, answer, keep_alive=False)
                return

    async def _handle(self, request: Request, task: asyncio.Task[None]) -> Response:
        self._busy.add(task)
        try:
            return await self.handler(request)
        finally:
            self._busy.discard(task)

    async def _read_request(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: Peer, state: RequestParse
    ) -> None:
        """Feed bytes until at least one request is complete, EOF, or a limit trips."""
        self._answer_expect(writer, peer, state)
        loop = asyncio.get_running_loop()
        header_deadline: float | None = None
        body_deadline: float | None = None
        while not state.done:
            if not state.started:
                timeout = self.limits.keepalive_timeout
            elif not state.headers_complete:
                header_deadline = header_deadline or loop.time() + self.limits.header_timeout
                timeout = header_deadline - loop.time()
            else:
                body_deadline = body_deadline or loop.time() + self.limits.body_timeout
                timeout = body_deadline - loop.time()
            if timeout <= 0:
                raise _timeout_error(state)
            try:
                # asyncio.timeout, not wait_for: wait_for wraps every read in a new task (Python 3.11).
                async with asyncio.timeout(timeout):
                    chunk = await reader.read(65536)
            except TimeoutError:
                if not state.started:
                    return
                raise _timeout_error(state) from None
            if not chunk:
                if state.started:
                    raise ConnectionError("peer closed mid-request")
                return
            if not state.started:
                header_deadline = loop.time() + self.limits.header_timeout
            state.feed(chunk)
            if not state.done:
                self._answer_expect(writer, peer, state)

    def _answer_expect(self, writer: asyncio.StreamWriter, peer: Peer, state: RequestParse) -> None:
        """A client waits for "100 Continue" before its body: send it, or the final answer when the head alone
        decides (no such path, wrong method: why make it send a body to be refused). Answers to requests before
        it go first, so this waits while any is owed."""
        if not (state.expect_continue and state.started and state.headers_complete) or state.done:
            return
        state.expect_continue = False
        if self.early_responder is not None:
            head = state.head()
            final = self.early_responder(Request(head.method, head.path, head.headers, b"", peer, False))
            if final is not None:
                raise _AnsweredEarly(final)
        writer.write(CONTINUE)

    @staticmethod
    async def _abort(writer: asyncio.StreamWriter, abort: Abort) -> None:
        if abort.raw:
            writer.write(abort.raw)
            with contextlib.suppress(ConnectionError):
                await writer.drain()
        sock = writer.get_extra_info("socket")
        if abort.reset and sock is not None:
            # SO_LINGER with a zero timeout makes close() send RST instead of FIN.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport = getattr(writer, "transport", None)  # a TLCP stream has none: it closes instead
        if abort.reset and transport is not None:
            transport.abort()
        else:
            writer.close()

    async def _write(self, writer: asyncio.StreamWriter, response: Response, *, keep_alive: bool) -> None:
        writer.write(encode_response(response, keep_alive=keep_alive))
        await writer.drain()

    @property
    def in_flight(self) -> int:
        return len(self._busy)

    async def drain(self, deadline: float) -> bool:
        """Stop serving and wait for what is owed, until `deadline` (a monotonic time).

        Owed: every request in flight, and the first request of every connection already accepted — its client
        has done nothing wrong and would otherwise see the connection drop. Idle keep-alive connections that
        have had their answers are closed at once; HTTP clients reconnect for those. True when nothing owed
        was cut off.
        """
        self._closing = True
        waited: set[asyncio.Task[None]] = set()
        while True:
            # A connection the listener accepted just before it closed reaches serve() a few loop turns later
            # (accept, transport, protocol, task): give it those turns, or it is missed here and the loop's
            # shutdown cancels it unanswered. Then wait for what is registered, and look again for late ones.
            for _ in range(_ACCEPT_TURNS):
                await asyncio.sleep(0)
            for task, state in list(self._conns.items()):
                if self._served.get(task) and not state.started and task not in self._busy:
                    task.cancel()
            pending = [t for t in self._conns if t not in waited]
            if not pending:
                break
            waited.update(pending)
            _, late = await asyncio.wait(pending, timeout=max(0.0, deadline - time.monotonic()))
            if late:
                break  # the deadline passed
        left = list(self._conns)
        owed = [t for t in left if t in self._busy or self._conns[t].started]
        for task in left:
            task.cancel()
        if left:
            await asyncio.wait(left, timeout=1.0)
        return not owed


class _AnsweredEarly(Exception):
    def __init__(self, response: Response) -> None:
        super().__init__("answered from the request head")
        self.response = response


#: loop turns from a connection accepted by the listener to its serve() running
_ACCEPT_TURNS = 5


def _timeout_error(state: RequestParse) -> RequestError:
    if not state.headers_complete:
        return RequestError("request headers not received in time", http_status=408, kind="header_timeout")
    return RequestError("request body not received in time", http_status=408, kind="body_timeout")
