"""Upgrade (#23): the audit directory carries its format version; a directory of the previous release (no marker)
is marked and its chain continues, one marked by a later release is refused untouched."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.audit.format import FORMAT, AuditFormatError
from gateway.audit.log import AuditLog, audit_files
from gateway.audit.verify import verify

from conftest import audit_outcome


async def write(directory: Path, start: int, count: int) -> None:
    log = AuditLog(directory)
    log.open()
    log.record(audit_outcome(i) for i in range(start, start + count))
    await log.close()


async def test_a_directory_without_marker_is_marked_and_its_chain_continues(tmp_path: Path) -> None:
    await write(tmp_path, 1, 3)
    (tmp_path / "FORMAT").unlink()  # as the previous release left it: no marker
    await write(tmp_path, 4, 2)
    assert (tmp_path / "FORMAT").read_text() == f"{FORMAT}\n"
    report = verify(audit_files(tmp_path))
    assert report.ok and report.entries == 5, report.problem


async def test_a_directory_of_a_later_release_is_refused_untouched(tmp_path: Path) -> None:
    await write(tmp_path, 1, 2)
    (tmp_path / "FORMAT").write_text(f"{FORMAT + 1}\n")
    files = audit_files(tmp_path)
    before = [f.read_bytes() for f in files]
    with files[-1].open("ab") as f:
        f.write(b'{"torn')  # a torn tail the open would otherwise cut back
    with pytest.raises(AuditFormatError, match=f"audit format {FORMAT + 1} was written by a later ybgate"):
        AuditLog(tmp_path).open()
    assert files[-1].read_bytes() == before[-1] + b'{"torn'
    assert (tmp_path / "FORMAT").read_text() == f"{FORMAT + 1}\n"
