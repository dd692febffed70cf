"""What real HIS HTTP stacks put on the wire, byte for byte, and what their calling code gets back.

Each family's request head is the one its library writes by default (header order, casing, Expect, charset
spelling): JDK 8 HttpURLConnection, Apache HttpClient 4.5, .NET
Framework 4.x HttpWebRequest and HttpClient (both send Expect: 100-continue and wait up to 350 ms for the interim
answer before sending the body). `sees()` is what HIS code on that stack reads: the body, or nothing but an
exception when the status is one the stack (or the usual HIS code around it) throws on.

A gateway, a simulator and the HIS clients' sockets are real. .NET Framework does not run here, so its clients
are their bytes; the Java stacks also run for real (tests/hisface/java: the installed JDK's HttpURLConnection and
HttpClient, and Apache HttpClient 4.5 from Debian), which is how the JDK's h2c upgrade request was found.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gateway.http1 import Headers

HOST = "127.0.0.1:8097"


def _head(path: str, *fields: str) -> bytes:
    """A POST's request line and header fields, in the order given."""
    return (f"POST {path} HTTP/1.1\r\n" + "".join(f"{f}\r\n" for f in fields) + "\r\n").encode("latin-1")


def _java_urlconnection(path: str, length: int) -> bytes:
    # conn.setRequestProperty("Content-Type", "application/json;charset=UTF-8") is what HIS code sets; the JDK
    # adds User-Agent, Host, Accept and Connection, then Content-Length for a fixed-length body.
    return _head(
        path,
        "Content-Type: application/json;charset=UTF-8",
        "User-Agent: Java/1.8.0_291",
        f"Host: {HOST}",
        "Accept: text/html, image/gif, image/jpeg, *; q=.2, */*; q=.2",
        "Connection: keep-alive",
        f"Content-Length: {length}",
    )


def _apache(content_type: str) -> Callable[[str, int], bytes]:
    """Apache HttpClient 4.5's head: new StringEntity(json, ContentType.APPLICATION_JSON) gives
    "application/json; charset=UTF-8", a MultipartEntityBuilder body its multipart type."""
    return lambda path, length: _head(
        path,
        f"Content-Length: {length}",
        f"Content-Type: {content_type}",
        f"Host: {HOST}",
        "Connection: Keep-Alive",
        "User-Agent: Apache-HttpClient/4.5.13 (Java/1.8.0_291)",
        "Accept-Encoding: gzip,deflate",
    )


def _dotnet(content_type: str) -> Callable[[str, int], bytes]:
    """.NET Framework's head: HttpWebRequest with request.ContentType = "application/json" and HttpClient with
    new StringContent(json, Encoding.UTF8, "application/json") differ only in Content-Type; both send
    Expect: 100-continue (ServicePointManager.Expect100Continue is true by default)."""
    return lambda path, length: _head(
        path,
        f"Content-Type: {content_type}",
        f"Host: {HOST}",
        f"Content-Length: {length}",
        "Expect: 100-continue",
        "Connection: Keep-Alive",
    )


def _text_plain(path: str, length: int) -> bytes:
    # a client that posts the JSON as text/plain without a charset, as the bureau's sample front-service client
    # does; it closes the connection after each call
    return _head(path, "Content-Type: text/plain", f"Host: {HOST}", f"Content-Length: {length}", "Connection: close")


@dataclass(frozen=True)
class Family:
    name: str
    head: Callable[[str, int], bytes]
    #: the stack waits for "100 Continue" (up to 350 ms) before it sends the body
    expect_continue: bool
    #: statuses the stack (or the HIS code written on it) reads a body from; anything else is an exception
    readable: Callable[[int], bool]


FAMILIES = (
    # getInputStream() throws IOException for a status of 400 or more
    Family("java-httpurlconnection", _java_urlconnection, False, lambda s: s < 400),
    # HIS code on HttpClient checks getStatusCode() == 200 and throws otherwise (as the bureau's sample does)
    Family("apache-httpclient", _apache("application/json; charset=UTF-8"), False, lambda s: s == 200),
    # GetResponse() throws WebException (ProtocolError) for a status of 400 or more
    Family("dotnet-httpwebrequest", _dotnet("application/json"), True, lambda s: s < 400),
    # EnsureSuccessStatusCode() throws HttpRequestException outside 2xx
    Family("dotnet-httpclient", _dotnet("application/json; charset=utf-8"), True, lambda s: 200 <= s < 300),
    # the sample client throws on any status other than 200
    Family("text-plain-sample", _text_plain, False, lambda s: s == 200),
)


@dataclass(frozen=True)
class Answer:
    status: int
    headers: Headers
    body: bytes
    #: an interim "100 Continue" came before the body was sent
    continued: bool
    #: the client sent its body (not when a final answer came while it waited for "100 Continue")
    body_sent: bool = True

    def sees(self, family: Family) -> dict[str, Any] | None:
        """The JSON the HIS code gets, or None where its stack throws before the body is read. The text is
        decoded in the charset the answer declares (as .NET's readers and HIS code using it do)."""
        if not family.readable(self.status):
            return None
        declared = (self.headers.get("content-type") or "").lower()
        doc = json.loads(self.body.decode("gbk" if "charset=gbk" in declared else "utf-8"))
        assert isinstance(doc, dict)
        return doc


async def read_answer(reader: asyncio.StreamReader) -> tuple[int, Headers, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = Headers(
        tuple((k.strip().lower(), v.strip()) for k, _, v in (line.partition(":") for line in lines[1:] if line))
    )
    length = int(headers.get("content-length") or 0)
    return status, headers, await reader.readexactly(length) if length else b""


async def call(
    family: Family,
    body: bytes,
    *,
    path: str = "/fsi/api/rsfComIfsService/callService",
    unix: str | None = None,
    tcp: tuple[str, int] | None = None,
    continue_wait: float = 0.35,
) -> Answer:
    """One request as `family` sends it. A 100-continue client sends its head, then waits for the interim
    answer (or a final one) up to `continue_wait` (.NET's 350 ms) before it sends the body anyway; `continued`
    says whether the interim answer came in time. Tests of the interim answer itself pass a long wait, so that
    a loaded machine cannot make it late."""
    if unix is not None:
        reader, writer = await asyncio.open_unix_connection(unix)
    else:
        assert tcp is not None
        reader, writer = await asyncio.open_connection(*tcp)
    try:
        writer.write(family.head(path, len(body)))
        continued = False
        if family.expect_continue:
            await writer.drain()
            try:
                status, headers, payload = await asyncio.wait_for(read_answer(reader), continue_wait)
            except TimeoutError:
                pass  # the stall this models: the client gives up waiting and sends the body
            else:
                if status != 100:  # a final answer before the body: the client sends no body
                    return Answer(status, headers, payload, continued=False, body_sent=False)
                continued = True
        writer.write(body)
        await writer.drain()
        while True:
            status, headers, payload = await asyncio.wait_for(read_answer(reader), 30)
            if status != 100:  # a late interim answer is skipped, as the clients do
                return Answer(status, headers, payload, continued)
    finally:
        writer.close()


def apache_multipart(boundary: str, json_text: str, filename: str, data: bytes) -> tuple[Family, bytes]:
    """Apache HttpClient's MultipartEntityBuilder (addTextBody jsonStr as UTF-8 text, addBinaryBody file)."""
    body = (
        f"--{boundary}\r\n"
        'Content-Disposition: form-data; name="jsonStr"\r\n'
        "Content-Type: text/plain; charset=UTF-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n\r\n"
    ).encode() + json_text.encode("utf-8")
    body += (
        f"\r\n--{boundary}\r\n"
        f'Content-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        "Content-Type: application/octet-stream\r\n"
        "Content-Transfer-Encoding: binary\r\n\r\n"
    ).encode() + data
    body += f"\r\n--{boundary}--\r\n".encode()
    head = _apache(f"multipart/form-data; boundary={boundary}")
    return Family("apache-httpclient-multipart", head, False, lambda s: s == 200), body


def dotnet_multipart(boundary: str, json_text: str, filename: str, data: bytes) -> tuple[Family, bytes]:
    """.NET's MultipartFormDataContent: a quoted boundary, unquoted part names, filename* beside filename,
    and Expect: 100-continue."""
    body = (
        f"--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        "Content-Disposition: form-data; name=jsonStr\r\n\r\n"
    ).encode() + json_text.encode("utf-8")
    body += (
        f"\r\n--{boundary}\r\nContent-Disposition: form-data; name=file; filename={filename}; "
        f"filename*=utf-8''{filename}\r\n\r\n"
    ).encode() + data
    body += f"\r\n--{boundary}--\r\n".encode()
    head = _dotnet(f'multipart/form-data; boundary="{boundary}"')
    return Family("dotnet-multipart", head, True, lambda s: 200 <= s < 300), body
