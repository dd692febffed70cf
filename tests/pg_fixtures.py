"""A pytest plugin (tests/conftest.py loads it): a throwaway PostgreSQL cluster (tests/pg_cluster.py) for the
session, with a fresh database for each test that asks for one, and gateways of a pair on it (tests/pg_pair.py)."""

from __future__ import annotations

import itertools
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from pg_cluster import Cluster, bindir, create, destroy
from pg_pair import Nodes

from gateway.sim.server import Simulator

_databases = itertools.count(1)


def _cluster() -> Iterator[Cluster]:
    bins = bindir()
    if bins is None:
        pytest.skip("PostgreSQL's server is not installed (Debian: apt-get install postgresql)")
    cluster = create(bins)
    try:
        yield cluster
    finally:
        destroy(cluster)


@pytest.fixture(scope="session")
def pg() -> Iterator[Cluster]:
    yield from _cluster()


@pytest.fixture
def own_pg() -> Iterator[Cluster]:
    """A cluster of the test's own, for a test that restarts its server."""
    yield from _cluster()


@pytest.fixture
def pg_dsn_file(pg: Cluster, tmp_path: Path) -> Path:
    """A DSN file (0600, as a secret file is kept) for a database of this test's own."""
    return pg.dsn_file(tmp_path / "outbox.dsn", f"t{os.getpid()}_{next(_databases)}")


@pytest_asyncio.fixture
async def pg_nodes(sim: Simulator, pg_dsn_file: Path) -> AsyncIterator[Nodes]:
    """Gateways of a pair on one database of this test's own, started by node name."""
    pair = Nodes(sim, pg_dsn_file)
    try:
        yield pair
    finally:
        await pair.close()
