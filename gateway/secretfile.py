"""Reading secrets (passwords, app secrets) from files whose permissions keep them secret.

Secrets never live in the YAML that ops pass around for review; they live in a file only the service can read
(or in a systemd credential, which is such a file under $CREDENTIALS_DIRECTORY).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from gateway.errors import GatewayError


class SecretFileError(GatewayError):
    kind = "secret_file"


def check_private(path: Path) -> None:
    """Refuse a file that others can read or that group members can change."""
    try:
        st = path.stat()
    except OSError as exc:
        raise SecretFileError(f"{path}: cannot read ({exc.strerror})") from None
    if not stat.S_ISREG(st.st_mode):
        raise SecretFileError(f"{path}: not a regular file")
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o027:
        raise SecretFileError(
            f"{path}: mode {mode:04o} lets others read it or group members change it; "
            f"fix with: chmod 600 {path} (or chmod 640 with group ybgate)"
        )


def read_secret(path: Path) -> str:
    check_private(path)
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as f:
        return f.read().decode("utf-8").strip()
