"""Backup and restore drill (#23): a backup taken while the outbox is open and writing restores onto a fresh
state directory where `ybgate outbox list` and `ybgate audit verify` agree with the original; restore refuses a
damaged copy and a running daemon. Real SQLite files, the real audit log, the CLI as an operator runs it."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
from pathlib import Path

from gateway.audit.log import AuditLog
from gateway.crypto import sm3
from gateway.relay.outbox import SqliteOutbox
from gateway.relay.states import RowState

from conftest import audit_outcome

DATA = Path(__file__).resolve().parent / "data" / "upgrade"


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args], capture_output=True, text=True, timeout=60, check=False
    )


def config(root: Path) -> Path:
    path = root / "ybgate.yaml"
    path.write_text(
        f"development: true\nstate_dir: {root / 'state'}\nruntime_dir: {root / 'run'}\n"
        "upstreams: [{name: sim, host: 127.0.0.1, port: 9443, transport: tcp}]\n"
    )
    return path


async def test_backup_while_writing_restores_to_an_equal_state(tmp_path: Path) -> None:
    original, fresh = tmp_path / "a", tmp_path / "b"
    (original / "state").mkdir(parents=True)
    fresh.mkdir()
    shutil.copy(DATA / "outbox-format0.db", original / "state" / "outbox.db")
    box = SqliteOutbox(original / "state" / "outbox.db", digest=sm3)
    await box.start()
    audit = AuditLog(original / "state" / "audit")
    audit.open()
    audit.record(audit_outcome(i) for i in range(1, 6))
    try:
        # still open, with a commit sitting in the WAL (checkpoints run elsewhere): the copy must include it
        await box.move("H44030000001202611240800010001", RowState.SENDING, attempts=1, upstream="primary")
        made = cli("backup", str(tmp_path / "copy"), "--config", str(config(original)))
        assert made.returncode == 0, made.stderr
        # the chain as it was copied: closing the log adds the checkpoint that signs its tail
        at_backup = cli("audit", "verify", "--config", str(original / "ybgate.yaml"))
    finally:
        await audit.close()
        await box.stop()
    assert (tmp_path / "copy" / "outbox.db").stat().st_mode & 0o077 == 0

    restored = cli("restore", str(tmp_path / "copy"), "--config", str(config(fresh)))
    assert restored.returncode == 0, restored.stderr
    for args in (("outbox", "list", "--limit", "100"), ("audit", "verify")):
        before = at_backup if args[0] == "audit" else cli(*args, "--config", str(original / "ybgate.yaml"))
        after = cli(*args, "--config", str(fresh / "ybgate.yaml"))
        assert before.returncode == after.returncode == 0, before.stderr + after.stderr
        # (the note naming the unsigned tail names the directory it read)
        assert before.stdout.replace(str(original), str(fresh)) == after.stdout and before.stdout
    listed = cli("outbox", "list", "--config", str(fresh / "ybgate.yaml")).stdout
    assert "sending" in listed and "accepted" not in listed  # the move made while the backup ran is in it


def test_restore_refuses_a_damaged_copy_and_a_running_daemon(tmp_path: Path) -> None:
    original, fresh = tmp_path / "a", tmp_path / "b"
    (original / "state").mkdir(parents=True)
    fresh.mkdir()
    shutil.copy(DATA / "outbox-format0.db", original / "state" / "outbox.db")
    copy = tmp_path / "copy"
    assert cli("backup", str(copy), "--config", str(config(original))).returncode == 0
    cfg = config(fresh)

    (fresh / "run").mkdir()
    with socket.socket(socket.AF_UNIX) as listener:  # stands for the daemon's control socket
        listener.bind(str(fresh / "run" / "control.sock"))
        listener.listen(1)
        running = cli("restore", str(copy), "--config", str(cfg))
    assert running.returncode == 1 and "the daemon is running" in running.stderr
    (fresh / "run" / "control.sock").unlink()

    data = bytearray((copy / "outbox.db").read_bytes())
    data[5000] ^= 0xFF
    (copy / "outbox.db").write_bytes(bytes(data))
    damaged = cli("restore", str(copy), "--config", str(cfg))
    assert damaged.returncode == 1 and "damaged copy" in damaged.stderr and "outbox.db" in damaged.stderr
    assert not (fresh / "state" / "outbox.db").exists()  # nothing half-restored
