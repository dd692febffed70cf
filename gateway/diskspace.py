"""Why a state directory cannot take writes, in words ops can act on: the outbox and the audit log both say it
when the disk refuses them (SQLite and os.write report a full or read-only disk in terms of the call that failed)."""

from __future__ import annotations

import os
from pathlib import Path


def disk_trouble(directory: Path, need: int = 1024 * 1024) -> str | None:
    """Why `directory` cannot take writes; None when it looks writable."""
    try:
        fs = os.statvfs(directory)
    except OSError as exc:
        return f"{directory}: {exc.strerror}"
    if fs.f_flag & os.ST_RDONLY:
        return f"the state disk holding {directory} is mounted read-only"
    free = fs.f_bavail * fs.f_frsize
    if free < need:
        return f"no space left on the state disk holding {directory} ({free} bytes free): free space, then start"
    return None
