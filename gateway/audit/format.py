"""The audit directory's format version: a file FORMAT holding one integer, beside the audit-NNNNNN.jsonl files.

A directory without it was written before the marker existed, in format 1 (the entries have not changed), and is
marked when opened; a directory marked by a later release is refused before any file in it is touched (no torn-tail
repair, no new entry), so that a downgrade cannot change its chain.
"""

from __future__ import annotations

import os
from pathlib import Path

from gateway.errors import GatewayError

FORMAT = 1
MARKER = "FORMAT"


class AuditFormatError(GatewayError):
    """The audit directory was written by a later release of ybgate, or its marker is not a number."""


def check_and_mark(directory: Path) -> None:
    marker = directory / MARKER
    try:
        text = marker.read_text("ascii").strip()
    except FileNotFoundError:
        text = ""
    except (OSError, UnicodeDecodeError) as exc:
        raise AuditFormatError(f"{marker}: cannot read the audit format marker ({exc})") from None
    if text and not text.isdigit():
        raise AuditFormatError(f"{marker}: not an audit format number: {text[:20]!r}")
    found = int(text) if text else None
    if found is not None and found > FORMAT:
        raise AuditFormatError(
            f"{directory}: audit format {found} was written by a later ybgate (this one reads up to {FORMAT}); "
            "run that release again, or restore a backup made by this one"
        )
    if found != FORMAT:
        tmp = marker.with_name(MARKER + ".tmp")
        tmp.write_text(f"{FORMAT}\n", "ascii")
        os.replace(tmp, marker)
