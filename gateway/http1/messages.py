"""Request and response values passed between the HTTP layer and its handlers."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import quote, unquote


@dataclass(frozen=True)
class Headers:
    """Header list with case-insensitive lookup; names are stored lower-cased."""

    items: tuple[tuple[str, str], ...] = ()

    def get(self, name: str, default: str | None = None) -> str | None:
        key = name.lower()
        for k, v in self.items:
            if k == key:
                return v
        return default


@dataclass(frozen=True)
class Peer:
    """Who is on the other end: Unix peer credentials or a TCP address."""

    uid: int | None = None
    gid: int | None = None
    pid: int | None = None
    address: str | None = None

    def describe(self) -> str:
        if self.uid is not None:
            return f"uid={self.uid},gid={self.gid},pid={self.pid}"
        return self.address or "unknown"


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: Headers
    body: bytes
    peer: Peer = field(default_factory=Peer)
    keep_alive: bool = True


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes = b""
    content_type: str = "application/json; charset=utf-8"
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Limits:
    """Bounds that keep one misbehaving client from holding the gateway.

    header_timeout bounds the time from the first byte of a request to the end of its headers, so a client
    dribbling header bytes (slowloris) is cut off however slowly it sends.
    """

    max_header_bytes: int = 16 * 1024
    max_headers: int = 100
    max_body_bytes: int = 1024 * 1024
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    keepalive_timeout: float = 75.0


def attachment(filename: str) -> str:
    """A Content-Disposition for a file answer. Header values are Latin-1, and file names here are often Chinese:
    an ASCII fallback, and the name itself percent-encoded as RFC 6266 / RFC 5987 say."""
    fallback = "".join(c if c.isascii() and c.isprintable() and c not in '"\\' else "_" for c in filename)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


def attachment_filename(disposition: str | None) -> str | None:
    """The file name a Content-Disposition gives: the RFC 5987 form (filename*) over the plain one."""
    plain = None
    for part in (disposition or "").split(";")[1:]:
        key, _, value = part.strip().partition("=")
        key = key.strip().lower()
        if key == "filename*":
            charset, _, rest = value.strip().partition("'")
            _, _, encoded = rest.partition("'")
            try:
                return unquote(encoded, encoding=charset or "utf-8", errors="strict") or None
            except (LookupError, UnicodeDecodeError):
                continue
        if key == "filename":
            plain = value.strip().strip('"') or None
    return plain
