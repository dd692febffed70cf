"""A reader that stops early (`ybgate outbox list | head`) ends the CLI quietly, for every command: no
BrokenPipe traceback, the exit status a writer killed by SIGPIPE would have. Real processes, a real pipe."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

from gateway.audit.log import AuditLog, Outcome
from gateway.crypto import sm3
from gateway.platform.catalogue import TxClass
from gateway.relay.outbox import SqliteOutbox


def config(tmp: Path) -> Path:
    cfg = tmp / "c.yaml"
    cfg.write_text(
        f"development: true\nstate_dir: {tmp}\nupstreams: [{{name: s, host: 127.0.0.1, port: 1, transport: tcp}}]\n"
    )
    return cfg


def head_one(*args: str) -> tuple[int, bytes, str]:
    """`ybgate ARGS | head -1`: read one line, close the pipe, and collect how the writer ended."""
    proc = subprocess.Popen([sys.executable, "-m", "gateway", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read().decode()
    return proc.wait(timeout=60), first, err


async def test_outbox_list_into_a_closed_pipe(tmp_path: Path) -> None:
    box = SqliteOutbox(tmp_path / "outbox.db", digest=sm3)
    await box.start()
    for i in range(3000):  # far more than a pipe's buffer holds
        await box.accept(
            msgid=f"H44030000001{20261124080000 + i // 10000:014d}{i % 10000:04d}",
            infno="1101",
            tx_class=TxClass.SAFE,
            psn_no="P1",
            body=b"{}",
            deadline=None,
        )
    await box.stop()
    code, first, err = await asyncio.to_thread(
        head_one, "outbox", "list", "--limit", "3000", "--config", str(config(tmp_path))
    )
    assert b" H44030000001" in first and code == 141, (code, err)
    assert "Traceback" not in err and "BrokenPipe" not in err, err


async def test_audit_export_into_a_closed_pipe(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit")
    log.open()
    log.record(
        Outcome(f"M{i:029d}", "1101", "answered", "infcode 0", "sim", sm3(b"%d" % i), b"r", 1.0) for i in range(3000)
    )
    await log.close()
    cfg = config(tmp_path)
    code, first, err = await asyncio.to_thread(
        head_one, "audit", "export", "--from", "2000-01-01", "--to", "2100-01-01", "--config", str(cfg)
    )
    assert first.startswith(b"{") and code == 141, (code, err)
    assert "Traceback" not in err and "BrokenPipe" not in err, err
