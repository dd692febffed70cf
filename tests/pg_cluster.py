"""A pytest plugin (tests/conftest.py loads it): a throwaway PostgreSQL cluster from Debian's package, one for the
session, with a fresh database for each test that asks for one: initdb and pg_ctl in a temporary directory, listening
only on a Unix socket there, with password (SCRAM) authentication so that a DSN carries a real secret.

PostgreSQL refuses to run as root: as root (CI) the cluster belongs to the package's `postgres` user and every
server command runs through runuser; as anyone else it belongs to that user.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

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

    def stop(self) -> None:
        self.run("pg_ctl", "-D", str(self.root / "data"), "-m", "immediate", "-w", "stop")

    def start(self) -> None:
        self.run("pg_ctl", "-D", str(self.root / "data"), "-l", str(self.root / "server.log"), "-w", "start")

    def psql(self, sql: str, dbname: str = "postgres") -> str:
        """Run SQL as the cluster's superuser over the socket (schema changes a test needs, new databases)."""
        cmd = [str(self.bindir / "psql"), "-h", str(self.root), "-d", dbname, "-U", "ybgate", "-qAtc", sql]
        env = {**os.environ, "PGPASSWORD": PASSWORD}
        return subprocess.run(cmd, check=True, capture_output=True, text=True, env=env, timeout=60).stdout


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


_databases = itertools.count(1)


@pytest.fixture(scope="session")
def pg() -> Iterator[Cluster]:
    bins = bindir()
    if bins is None:
        pytest.skip("PostgreSQL's server is not installed (Debian: apt-get install postgresql)")
    cluster = create(bins)
    try:
        yield cluster
    finally:
        destroy(cluster)


@pytest.fixture
def pg_dsn_file(pg: Cluster, tmp_path: Path) -> Path:
    """A DSN file (0600, as a secret file is kept) for a database of this test's own."""
    name = f"t{os.getpid()}_{next(_databases)}"
    pg.psql(f"CREATE DATABASE {name}")
    path = tmp_path / "outbox.dsn"
    path.write_text(pg.dsn(dbname=name) + "\n")
    path.chmod(0o600)
    return path
