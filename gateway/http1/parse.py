"""The HIS-facing request parser: httptools callbacks collecting one or more (pipelined) requests, with the
header, count and body limits enforced as the bytes arrive, and `Expect: 100-continue` noted for the server."""

from __future__ import annotations

import httptools

from gateway.errors import RequestError
from gateway.http1.messages import Headers, Limits, Request


class RequestParse:
    """httptools callbacks collecting one or more (pipelined) requests, enforcing header and body limits."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.parser = httptools.HttpRequestParser(self)
        self.done: list[Request] = []
        self.started = False
        self.headers_complete = False
        #: the request being read waits for "100 Continue" (or a final answer) before it sends its body
        self.expect_continue = False
        #: a request that asked for an upgrade, read on as plain HTTP/1.1: its head, and the body bytes it still owes
        self._upgraded: Request | None = None
        self._owed = 0
        self._reset()

    def _reset(self) -> None:
        self.url = b""
        self.headers: list[tuple[str, str]] = []
        self.header_bytes = 0
        self.body = bytearray()

    def feed(self, data: bytes) -> None:
        """Parse `data`. A limit tripped in a callback, or a request ybgate cannot serve, raises RequestError;
        malformed HTTP raises httptools.HttpParserError."""
        if self._upgraded is not None:
            data = self._feed_upgraded(data)
            if not data:
                return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            # A limit tripped inside a callback: httptools wraps it; surface the limit itself.
            if isinstance(exc.__context__, RequestError):
                raise exc.__context__ from None
            raise
        except httptools.HttpParserUpgrade as upgrade:
            # Not an HttpParserError: llhttp stops at CONNECT and at "Connection: upgrade" with an Upgrade header,
            # having completed the request without its body (taken for the new protocol's bytes).
            self._decline_upgrade(data[int(upgrade.args[0]) :] if upgrade.args else b"")

    def _decline_upgrade(self, rest: bytes) -> None:
        """Java's HttpClient (JDK 11+) asks every request by default to upgrade to h2c. A server that stays on
        HTTP/1.1 ignores the Upgrade header (RFC 9110 7.8) and answers as HTTP/1.1, which the client accepts:
        so the request's body is read here as HTTP/1.1 would, and a fresh parser takes what follows. CONNECT
        has no such reading: it is refused."""
        request = self.done.pop() if self.done else None
        headers = request.headers if request is not None else Headers()
        length = headers.get("content-length") or "0"
        if request is None or request.method == "CONNECT" or headers.get("transfer-encoding") or not length.isdigit():
            raise RequestError(
                "CONNECT and upgrades with a chunked body are not supported: send plain HTTP/1.1",
                kind="bad_http",
            )
        if int(length) > self.limits.max_body_bytes:
            raise RequestError(
                f"body of {length} bytes exceeds the limit of {self.limits.max_body_bytes}",
                http_status=413,
                kind="body_too_large",
            )
        connection = {t.strip().lower() for t in (headers.get("connection") or "").split(",")}
        self._upgraded = Request(request.method, request.path, headers, b"", keep_alive="close" not in connection)
        self._owed = int(length)
        self.parser = httptools.HttpRequestParser(self)
        self.started = self.headers_complete = True
        self.body = bytearray()
        self.feed(rest)

    def _feed_upgraded(self, data: bytes) -> bytes:
        """Take the body an upgrade-declined request owes; what is left belongs to the next request."""
        take = data[: self._owed]
        self.body += take
        self._owed -= len(take)
        if self._owed:
            return b""
        head, self._upgraded = self._upgraded, None
        assert head is not None
        self.done.append(Request(head.method, head.path, head.headers, bytes(self.body), keep_alive=head.keep_alive))
        self.started = self.headers_complete = False
        return data[len(take) :]

    def on_message_begin(self) -> None:
        self._reset()
        self.started = True
        self.headers_complete = False
        self.expect_continue = False

    def on_url(self, url: bytes) -> None:
        self.url += url
        self._count(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)
        if len(self.headers) >= self.limits.max_headers:
            raise RequestError(
                f"too many header fields (limit {self.limits.max_headers})",
                http_status=431,
                kind="headers_too_large",
            )
        # Header bytes are Latin-1 by RFC 9110; anything else is refused rather than guessed.
        self.headers.append((name.decode("latin-1").lower(), value.decode("latin-1")))

    def _count(self, n: int) -> None:
        self.header_bytes += n
        if self.header_bytes > self.limits.max_header_bytes:
            raise RequestError(
                f"request line and headers exceed {self.limits.max_header_bytes} bytes",
                http_status=431,
                kind="headers_too_large",
            )

    def on_headers_complete(self) -> None:
        self.headers_complete = True
        headers = Headers(tuple(self.headers))
        # .NET Framework sends it on every POST and waits 350 ms for the interim answer before the body.
        expect = headers.get("expect")
        self.expect_continue = (
            expect is not None and expect.lower() == "100-continue" and self.parser.get_http_version() == "1.1"
        )
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self.limits.max_body_bytes:
            raise RequestError(
                f"body of {length} bytes exceeds the limit of {self.limits.max_body_bytes}",
                http_status=413,
                kind="body_too_large",
            )

    def on_body(self, chunk: bytes) -> None:
        self.body += chunk
        if len(self.body) > self.limits.max_body_bytes:
            raise RequestError(
                f"body exceeds the limit of {self.limits.max_body_bytes} bytes",
                http_status=413,
                kind="body_too_large",
            )

    def head(self) -> Request:
        """The request being read, as far as its headers: for a decision before its body."""
        try:
            path = (httptools.parse_url(self.url).path or b"/").decode("utf-8")
        except (httptools.HttpParserInvalidURLError, UnicodeDecodeError):
            path = ""  # no platform path: the API refuses it as such
        return Request(self.parser.get_method().decode("ascii"), path, Headers(tuple(self.headers)), b"")

    def on_message_complete(self) -> None:
        self.expect_continue = False  # the body came without waiting: no interim answer is owed
        method = self.parser.get_method().decode("ascii")
        try:
            # An absolute-form target without a path ("GET http://host HTTP/1.1") asks for "/" (RFC 9110 4.2.3);
            # parse_url gives None for its path.
            path = (httptools.parse_url(self.url).path or b"/").decode("utf-8")
        except (httptools.HttpParserInvalidURLError, UnicodeDecodeError) as exc:
            raise RequestError("request target is not a valid URL", kind="bad_url") from exc
        self.done.append(
            Request(
                method=method,
                path=path,
                headers=Headers(tuple(self.headers)),
                body=bytes(self.body),
                keep_alive=self.parser.should_keep_alive(),
            )
        )
        self.started = False
        self.headers_complete = False
