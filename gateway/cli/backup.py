"""`ybgate backup DEST` and `ybgate restore SRC`: the outbox and the audit log, copied consistently.

The audit files are copied first and the outbox (SQLite's online backup, a consistent snapshot while the daemon
writes) after them: the copy's outbox may know of outcomes its audit log lacks, never the reverse, and the
daemon's audit catch-up appends those on the restored host's first start. A MANIFEST lists every file with its
SM3; restore refuses a copy that does not match it, an outbox that fails SQLite's integrity check, an audit log
whose chain does not verify, and a daemon that answers on the control socket.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import sys
from pathlib import Path
from typing import Any

from gateway.cli.running import daemon_answers
from gateway.config import DEFAULT_CONFIG_PATH, load_config
from gateway.errors import ConfigError

MANIFEST = "MANIFEST.json"


class BackupError(Exception):
    pass


def add_parsers(sub: Any) -> None:
    backup = sub.add_parser("backup", help="copy the outbox and audit log to DEST (consistent, while the daemon runs)")
    backup.add_argument("dest", type=Path, help="a new directory")
    backup.add_argument("--config", type=Path, default=DEFAULT_CONFIG_PATH, help="config file (default %(default)s)")
    restore = sub.add_parser("restore", help="put a backup back into the state directory (daemon stopped)")
    restore.add_argument("src", type=Path, help="a directory written by ybgate backup")
    restore.add_argument("--config", type=Path, default=DEFAULT_CONFIG_PATH, help="config file (default %(default)s)")


def run(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
        if config.relay.outbox.backend == "postgresql":
            # The outbox is the database's: its backups are the database's own tools, not a copy of a file here.
            raise BackupError(
                "the outbox is in PostgreSQL (relay.outbox): back it up with the database's own tools (pg_dump, "
                f"or its replication); this host's audit log is the directory {config.audit_dir}"
            )
        if args.command == "backup":
            backup(config.state_dir / "outbox.db", config.audit_dir, args.dest)
            print(f"backup written to {args.dest}")
        else:
            if daemon_answers(config.control_socket):
                raise BackupError(f"the daemon is running (it answers on {config.control_socket}): stop it first")
            restore(args.src, config.state_dir / "outbox.db", config.audit_dir)
            print(f"restored {args.src} into {config.state_dir}")
    except (BackupError, ConfigError, OSError, sqlite3.Error) as exc:
        print(f"ybgate {args.command}: {exc}", file=sys.stderr)
        return 1
    return 0


def _sm3_file(path: Path) -> str:
    from gateway.crypto import sm3

    return sm3(path.read_bytes()).hex()


def backup(outbox: Path, audit_dir: Path, dest: Path) -> None:
    from gateway.audit.log import audit_files

    if not outbox.is_file():
        raise BackupError(f"no outbox at {outbox}")
    dest.mkdir(mode=0o700)  # a new directory: a backup never mixes with an older one
    (dest / "audit").mkdir(mode=0o700)
    for f in [*audit_files(audit_dir), audit_dir / "FORMAT"]:
        if f.is_file():
            shutil.copy2(f, dest / "audit" / f.name)
    fd = os.open(dest / "outbox.db", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # patient data
    os.close(fd)
    source = sqlite3.connect(f"file:{outbox}?mode=ro", uri=True)
    target = sqlite3.connect(dest / "outbox.db")
    try:
        source.backup(target)
    finally:
        target.close()
        source.close()
    files = sorted(p for p in dest.rglob("*") if p.is_file())
    manifest = {str(p.relative_to(dest)): _sm3_file(p) for p in files}
    (dest / MANIFEST).write_text(json.dumps({"files": manifest}, indent=1) + "\n", "utf-8")


def verify_copy(src: Path) -> None:
    from gateway.audit.log import audit_files
    from gateway.audit.verify import verify

    try:
        manifest = json.loads((src / MANIFEST).read_text("utf-8"))["files"]
    except (OSError, ValueError, KeyError) as exc:
        raise BackupError(f"{src}: not a ybgate backup (no readable {MANIFEST}: {exc})") from None
    present = {str(p.relative_to(src)) for p in src.rglob("*") if p.is_file()} - {MANIFEST}
    if missing := sorted(set(manifest) - present):
        raise BackupError(f"{src}: damaged copy, missing {', '.join(missing)}")
    for name, digest in manifest.items():
        if _sm3_file(src / name) != digest:
            raise BackupError(f"{src / name}: damaged copy (its SM3 differs from the manifest)")
    conn = sqlite3.connect(f"file:{src / 'outbox.db'}?mode=ro", uri=True)
    try:
        result = conn.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        conn.close()
    if result != "ok":
        raise BackupError(f"{src / 'outbox.db'}: damaged copy ({result})")
    report = verify(audit_files(src / "audit"))
    if not report.ok:
        raise BackupError(f"{src / 'audit'}: the audit chain does not verify: {report.problem}")


def restore(src: Path, outbox: Path, audit_dir: Path) -> None:
    """Verify the copy, then put it in place; what was in the state directory is kept beside it."""
    verify_copy(src)
    for existing in (outbox, audit_dir):
        if existing.exists():
            aside = existing.with_name(existing.name + ".before-restore")
            if aside.exists():
                raise BackupError(f"{aside} exists from an earlier restore: move it away first")
            existing.rename(aside)
    for suffix in ("-wal", "-shm"):
        stale = outbox.with_name(outbox.name + suffix)
        if stale.exists():
            stale.rename(stale.with_name(stale.name + ".before-restore"))
    outbox.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
    shutil.copy2(src / "outbox.db", outbox)
    os.chmod(outbox, 0o600)
    shutil.copytree(src / "audit", audit_dir)
    os.chmod(audit_dir, 0o750)  # noqa: S103 -- the audit directory's own mode (AuditLog.open makes it 0750)
