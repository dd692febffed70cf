"""Paths and loaders for the crypto known-answer data copied under tests/data/crypto."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parent.parent / "data" / "crypto"
VECTORS = DATA / "vectors"
PKI = DATA / "pki"
NEG = VECTORS / "certs"
PASSWORD = (PKI / "PASSWORD").read_text().strip().encode()


def vectors(name: str) -> Any:
    return json.loads((VECTORS / f"{name}.json").read_text())


def private_copy(src: Path, dst_dir: Path) -> Path:
    """Git keeps no file modes: key files are copied and made 0600 where a test reads them as keys."""
    dst = dst_dir / src.name
    shutil.copyfile(src, dst)
    dst.chmod(0o600)
    return dst
