"""Reading secrets (passwords, app secrets) from files whose permissions keep them secret.

Secrets never live in the YAML that ops pass around for review; they live in a file only the service can read
(or in a systemd credential, which is such a file under $CREDENTIALS_DIRECTORY).
"""

from __future__ import annotations

import os
from pathlib import Path

from gateway.crypto.errors import KeyFileError
from gateway.crypto.keyfile import check_file_mode
from gateway.errors import GatewayError


class SecretFileError(GatewayError):
    kind = "secret_file"


def check_private(path: Path) -> None:
    """Refuse a file that others can read or that group members can change (group read is allowed, for a
    root-owned secret the service's group reads)."""
    try:
        check_file_mode(
            path,
            0o027,
            "mode {mode} lets others read it or group members change it; "
            f"fix with: chmod 600 {path} (or chmod 640 with group ybgate)",
        )
    except KeyFileError as err:
        raise SecretFileError(err.message) from None


def read_secret(path: Path) -> str:
    check_private(path)
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as f:
        return f.read().decode("utf-8").strip()
