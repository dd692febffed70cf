"""Sessions for resumption by session id: what a client keeps and a server caches."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class TlcpSession:
    session_id: bytes
    cipher_suite: int
    master_secret: bytes = field(repr=False)
    #: DER certificates of the peer as authenticated in the full handshake
    peer_certificates: tuple[bytes, ...] = field(default=(), repr=False)
    created: float = 0.0
    server_name: str | None = None


class SessionCache(Protocol):
    def get(self, session_id: bytes) -> TlcpSession | None: ...
    def put(self, session: TlcpSession) -> None: ...
    def remove(self, session_id: bytes) -> None: ...


class MemorySessionCache:
    """Bounded LRU cache with a lifetime; ``now`` is injected so tests control expiry."""

    def __init__(self, now: Callable[[], float], *, lifetime: float = 3600.0, size: int = 1024) -> None:
        self._now = now
        self._lifetime = lifetime
        self._size = size
        # stored with the cache's own insertion time, so expiry does not depend on the connection's clock
        self._items: OrderedDict[bytes, tuple[float, TlcpSession]] = OrderedDict()

    def get(self, session_id: bytes) -> TlcpSession | None:
        item = self._items.get(session_id)
        if item is None:
            return None
        if self._now() - item[0] > self._lifetime:
            del self._items[session_id]
            return None
        self._items.move_to_end(session_id)
        return item[1]

    def put(self, session: TlcpSession) -> None:
        self._items[session.session_id] = (self._now(), session)
        self._items.move_to_end(session.session_id)
        while len(self._items) > self._size:
            self._items.popitem(last=False)

    def remove(self, session_id: bytes) -> None:
        self._items.pop(session_id, None)

    def __len__(self) -> int:
        return len(self._items)
