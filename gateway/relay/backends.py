"""The outbox the configuration names (relay.outbox.backend): the composition root's one call, and the check
`ybgate check` runs against a database before the daemon would start on it. Takes the settings' values, not the
configuration (the relay package does not know the config module)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from gateway.relay.outbox import SqliteOutbox
from gateway.relay.pg_connect import probe
from gateway.relay.pg_outbox import PgOutbox
from gateway.relay.repository import OutboxUnavailable


def outbox_for(
    backend: str,
    *,
    state_dir: Path,
    dsn_file: Path | None,
    synchronous: str,
    digest: Callable[[bytes], bytes],
    node: str | None = None,
    lease: float = 5.0,
) -> SqliteOutbox | PgOutbox:
    if backend == "postgresql":
        if dsn_file is None:
            raise ValueError("the postgresql outbox needs a DSN file")
        return PgOutbox(dsn_file, digest=digest, node=node, lease=lease)
    return SqliteOutbox(state_dir / "outbox.db", digest=digest, synchronous=synchronous)


async def database_problem(backend: str, dsn_file: Path | None) -> str | None:
    """One line when the configured database cannot be reached or refuses the login (never the DSN); None when it
    answers, or when the outbox is the local file (state_dir's checks cover that). Connects and asks nothing of
    the tables: a check creates nothing."""
    if backend != "postgresql" or dsn_file is None:
        return None
    try:
        await probe(dsn_file)
    except OutboxUnavailable as e:
        return f"relay.outbox: {e.message}"
    return None
