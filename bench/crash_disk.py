"""The crash harness's small state disk: a tmpfs mounted for the gateway's state directory, filled to the last
byte for a disk-full round and given back by deleting the filler (#20). Mounting needs root; the mount is
always taken away again (lazily, so a gateway still holding files does not keep it)."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path


class SmallDisk:
    def __init__(self, where: Path, size_mib: int) -> None:
        self.where = where
        self.size_mib = size_mib
        self.filler = where / "filler"

    @contextlib.contextmanager
    def mounted(self) -> Iterator[SmallDisk]:
        self.where.mkdir(parents=True, exist_ok=True)
        options = f"size={self.size_mib}m,mode=0750"
        subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(self.where)], check=True, timeout=15)
        try:
            yield self
        finally:
            subprocess.run(["umount", "-l", str(self.where)], check=False, timeout=15)

    def fill(self) -> int:
        """Take every free byte: the bytes taken. Writes shrink to one byte so nothing at all is left."""
        taken = 0
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            for size in (1 << 20, 65536, 4096, 1):
                with contextlib.suppress(OSError):
                    while True:
                        taken += os.write(fd, b"\0" * size)
        finally:
            os.close(fd)
        return taken

    def free(self) -> None:
        self.filler.unlink(missing_ok=True)

    def available(self) -> int:
        st = os.statvfs(self.where)
        return st.f_bavail * st.f_frsize
