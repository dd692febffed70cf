"""Whether the daemon of a configuration is running: commands that must not run beside it (restore, migrate) ask
its control socket."""

from __future__ import annotations

import socket
from pathlib import Path


def daemon_answers(control: Path) -> bool:
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(2)
        try:
            s.connect(str(control))
        except OSError:
            return False
    return True
