"""Pull/push codec helpers for TLCP wire structures.

Reading past the end, or a length prefix that overruns its container, is a ``decode_error`` alert: every
parser built on :class:`Buffer` therefore fails only with :class:`~gateway.tlcp.alerts.TLCPAlert`.
"""

from __future__ import annotations

from gateway.tlcp.alerts import AlertDescription, TLCPAlert


class Buffer:
    """A cursor over immutable input (``pull_*``) or a growing output (``push_*``)."""

    __slots__ = ("_data", "_pos")

    def __init__(self, data: bytes = b"") -> None:
        self._data = bytearray(data)
        self._pos = 0

    # -- reading ---------------------------------------------------------------------------------------
    def eof(self) -> bool:
        return self._pos >= len(self._data)

    def remaining(self) -> int:
        return len(self._data) - self._pos

    def pull_bytes(self, n: int) -> bytes:
        if n < 0 or self._pos + n > len(self._data):
            raise TLCPAlert(AlertDescription.decode_error, "truncated structure")
        out = bytes(self._data[self._pos : self._pos + n])
        self._pos += n
        return out

    def pull_uint(self, width: int) -> int:
        return int.from_bytes(self.pull_bytes(width), "big")

    def pull_uint8(self) -> int:
        return self.pull_uint(1)

    def pull_uint16(self) -> int:
        return self.pull_uint(2)

    def pull_uint24(self) -> int:
        return self.pull_uint(3)

    def pull_uint32(self) -> int:
        return self.pull_uint(4)

    def pull_vector(self, length_width: int, *, minimum: int = 0) -> bytes:
        """A length-prefixed opaque vector; ``minimum`` enforces ``<minimum..2^n-1>`` bounds."""
        n = self.pull_uint(length_width)
        if n < minimum:
            raise TLCPAlert(AlertDescription.decode_error, f"vector shorter than {minimum}")
        return self.pull_bytes(n)

    def pull_rest(self) -> bytes:
        return self.pull_bytes(self.remaining())

    def expect_end(self, what: str) -> None:
        if not self.eof():
            raise TLCPAlert(AlertDescription.decode_error, f"{self.remaining()} trailing bytes in {what}")

    # -- writing ---------------------------------------------------------------------------------------
    def push_bytes(self, data: bytes) -> None:
        self._data += data

    def push_uint(self, width: int, value: int) -> None:
        self._data += value.to_bytes(width, "big")

    def push_uint8(self, value: int) -> None:
        self.push_uint(1, value)

    def push_uint16(self, value: int) -> None:
        self.push_uint(2, value)

    def push_uint24(self, value: int) -> None:
        self.push_uint(3, value)

    def push_uint32(self, value: int) -> None:
        self.push_uint(4, value)

    def push_vector(self, length_width: int, data: bytes) -> None:
        if len(data) >= 1 << (8 * length_width):
            raise ValueError(f"vector of {len(data)} bytes does not fit a {length_width}-byte length")
        self.push_uint(length_width, len(data))
        self._data += data

    def data(self) -> bytes:
        return bytes(self._data)
