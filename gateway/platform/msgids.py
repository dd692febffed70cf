"""Message ids for the requests the gateway itself sends (冲正, sign-in).

A msgid is fixmedins_code (12) + yyyyMMddHHmmss (14) + a 4-digit sequence. The gateway takes the 9xxx
sequence range, so its ids rarely meet a HIS's; a clash is still possible (a HIS may use any sequence), and
the outbox refuses a clash, so callers step to the next id.
"""

from __future__ import annotations

import itertools
from datetime import datetime


class MsgidMaker:
    def __init__(self, first: int = 9000, size: int = 1000) -> None:
        self._first = first
        self._size = size
        self._seq = itertools.count(1)

    def make(self, fixmedins_code: str, now: datetime) -> str:
        code = f"{fixmedins_code[:12]:<12}".replace(" ", "0")
        return f"{code}{now:%Y%m%d%H%M%S}{self._first + next(self._seq) % self._size:04d}"
