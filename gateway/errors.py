"""Errors that carry their wire meaning.

Each error knows how it is told to whoever is on the other side: the HIS gets an HTTP status and a
platform-shaped body (infcode, err_msg); ops get a config position. Conversion happens once, at the
boundary that owns the wire (api, cli), never in between.
"""

from __future__ import annotations

from dataclasses import dataclass


class GatewayError(Exception):
    """Base of every error ybgate raises on purpose."""

    http_status: int = 500
    infcode: int = -1
    #: stable, low-cardinality label for metrics and logs
    kind: str = "internal"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class RequestError(GatewayError):
    """The HIS sent something we will not forward (bad HTTP, bad envelope, too large)."""

    http_status = 400
    kind = "bad_request"

    def __init__(self, message: str, *, http_status: int | None = None, kind: str | None = None) -> None:
        super().__init__(message)
        if http_status is not None:
            self.http_status = http_status
        if kind is not None:
            self.kind = kind


class EnvelopeError(RequestError):
    """The platform envelope is malformed; `field` names the offending field."""

    kind = "bad_envelope"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}", http_status=400)
        self.field = field


class UpstreamError(GatewayError):
    """The platform could not be reached or answered with something that is not an answer."""

    http_status = 502
    kind = "upstream"


class UpstreamTimeout(UpstreamError):
    """No answer within the request's deadline."""

    http_status = 504
    kind = "upstream_timeout"


@dataclass(frozen=True)
class Position:
    """Where in a YAML file a value stands (1-based, as editors count)."""

    file: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


class ConfigError(GatewayError):
    """A configuration or policy file is wrong; every problem carries its position and field path."""

    kind = "config"

    def __init__(self, problems: list[tuple[Position | None, str, str]]) -> None:
        self.problems = problems
        super().__init__("\n".join(self.lines()))

    def lines(self) -> list[str]:
        out = []
        for pos, field, message in self.problems:
            where = str(pos) if pos else "?"
            out.append(f"{where}: {field}: {message}" if field else f"{where}: {message}")
        return out
