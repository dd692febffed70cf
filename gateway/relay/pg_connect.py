"""Reaching the outbox's PostgreSQL: the DSN from its secret file, the failures that mean "not there or not ours",
and how they are told — by kind only, never with the DSN (it holds the password) or the driver's text."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg

from gateway.relay.repository import OutboxUnavailable

#: what tells "the database is not there or not ours" from a defect: these refuse the call, never crash the relay
UNAVAILABLE = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.InvalidAuthorizationSpecificationError,
    asyncpg.InsufficientResourcesError,
    asyncpg.OperatorInterventionError,
    asyncpg.InvalidCatalogNameError,
    # the driver's protocol left mid-operation by a server that shut down under it ("cannot switch to state …;
    # another operation is in progress"): each operation has a connection of its own, never shared by two tasks
    asyncpg.exceptions.InternalClientError,
)


def read_dsn(path: Path) -> str:
    try:
        dsn = path.read_text().strip()
    except OSError as e:
        raise OutboxUnavailable(f"cannot read the outbox database's DSN file {path}: {e.strerror}") from None
    if not dsn.startswith(("postgresql://", "postgres://")):
        raise OutboxUnavailable(f"{path}: the outbox database's DSN is not a postgresql:// URI")
    return dsn


def why_unavailable(dsn_file: Path, kind: str) -> str:
    # The driver's text may name the server, the user or (for a malformed DSN) the DSN itself: only the
    # exception's class goes out.
    return f"the outbox database of {dsn_file} is unavailable ({kind})"


async def probe(dsn_file: Path, connect_timeout: float = 5.0) -> None:
    """Log in and ask the server one trivial question; OutboxUnavailable (no DSN in it) when that fails."""
    dsn = read_dsn(dsn_file)
    failed: str | None = None
    try:
        conn = await asyncpg.connect(dsn, timeout=connect_timeout)
        try:
            await conn.fetchval("SELECT 1")
        finally:
            await conn.close()
    except (*UNAVAILABLE, ValueError) as e:
        failed = type(e).__name__
    del dsn
    if failed is not None:
        raise OutboxUnavailable(why_unavailable(dsn_file, failed))
