"""A throwaway PostgreSQL cluster from Debian's package: initdb and pg_ctl in a temporary directory, listening only
on a Unix socket there, with password (SCRAM) authentication so that a DSN carries a real secret. The suite's
fixtures (tests/pg_fixtures.py) start one per session; the two-node crash harness (bench/ha.py) starts its own and
restarts it under load. Plain Python, no pytest: the bench imports it too.

PostgreSQL refuses to run as root: as root (CI) the cluster belongs to the package's `postgres` user and every
server command runs through runuser; as anyone else it belongs to that user.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

PASSWORD = "s3cret-pg-Pa55"


def bindir() -> Path | None:
    """The newest installed server's bin directory (Debian keeps it off PATH)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    pg_ctl = shutil.which("pg_ctl")
    return Path(pg_ctl).parent if pg_ctl else None


@dataclass(frozen=True)
class Cluster:
    root: Path
    bindir: Path
    owner: str | None  # the user the server runs as, when the tests run as root

    @property
    def socket_dir(self) -> Path:
        return self.root

    def dsn(self, password: str = PASSWORD, dbname: str = "postgres") -> str:
        return f"postgresql://ybgate:{password}@/{dbname}?host={self.socket_dir}&port=5432"

    def run(self, *argv: str) -> None:
        cmd = [str(self.bindir / argv[0]), *argv[1:]]
        if self.owner is not None:
            cmd = ["runuser", "-u", self.owner, "--", *cmd]
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)

    def _ctl(self, action: str, *options: str) -> None:
        self.run("pg_ctl", "-D", str(self.root / "data"), *options, "-w", action)

    def stop(self) -> None:
        self._ctl("stop", "-m", "immediate")

    def start(self) -> None:
        self._ctl("start", "-l", str(self.root / "server.log"))

    def restart(self) -> None:
        """What an operator's restart does: sessions are cut, what was committed stays (fast, not immediate)."""
        self._ctl("restart", "-m", "fast", "-l", str(self.root / "server.log"))

    def psql(self, sql: str, dbname: str = "postgres") -> str:
        """Run SQL as the cluster's superuser over the socket (schema changes a test needs, new databases)."""
        cmd = [str(self.bindir / "psql"), "-h", str(self.root), "-d", dbname, "-U", "ybgate", "-qAtc", sql]
        env = {**os.environ, "PGPASSWORD": PASSWORD}
        return subprocess.run(cmd, check=True, capture_output=True, text=True, env=env, timeout=60).stdout

    def dsn_file(self, path: Path, dbname: str) -> Path:
        """A new database and its DSN in a file (0600, as a secret file is kept)."""
        self.psql(f"CREATE DATABASE {dbname}")
        path.write_text(self.dsn(dbname=dbname) + "\n")
        path.chmod(0o600)
        return path


def create(bins: Path) -> Cluster:
    owner = "postgres" if os.geteuid() == 0 else None
    root = Path(tempfile.mkdtemp(prefix="ybgate-pg-"))
    if owner is not None:
        entry = pwd.getpwnam(owner)
        os.chown(root, entry.pw_uid, entry.pw_gid)
    cluster = Cluster(root, bins, owner)
    pwfile = root / "pw"
    pwfile.write_text(PASSWORD + "\n")
    if owner is not None:
        os.chown(pwfile, pwd.getpwnam(owner).pw_uid, -1)
    cluster.run(
        "initdb", "-D", str(root / "data"), "-U", "ybgate", "--pwfile", str(pwfile),
        "--auth=scram-sha-256", "-E", "UTF8", "--no-locale",
    )  # fmt: skip
    pwfile.unlink()
    with (root / "data" / "postgresql.conf").open("a") as conf:
        # Unix socket only, in the cluster's own directory; fsync stays on: durability is what is tested
        conf.write(f"listen_addresses = ''\nunix_socket_directories = '{root}'\nport = 5432\nmax_connections = 50\n")
    cluster.start()
    return cluster


def destroy(cluster: Cluster) -> None:
    try:
        cluster.stop()
    finally:
        shutil.rmtree(cluster.root, ignore_errors=True)
