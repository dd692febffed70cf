"""`ybgate sim`: the platform simulator in the foreground, plain or with a province profile (`ybgate profile sim`)."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from pathlib import Path
from typing import Any

from gateway.errors import GatewayError


def cmd_sim(
    host: str, port: int, admin_port: int, pki: Path | None = None, profile: Any = None, *, journal: Path | None = None
) -> int:
    from gateway.app.demo import sim_tlcp_config
    from gateway.logging import configure
    from gateway.sim.journal import JournalDamaged
    from gateway.sim.server import Simulator

    try:
        tlcp = sim_tlcp_config(pki) if pki else None
    except (OSError, GatewayError, ValueError) as exc:
        print(f"ybgate sim: --pki {pki}: {_reason(exc)}", file=sys.stderr)
        return 1
    configure("info", "json")

    try:
        sim = Simulator(profile=profile, journal=journal)
    except (OSError, JournalDamaged) as exc:
        print(f"ybgate sim: --journal {journal}: {_reason(exc)}", file=sys.stderr)
        return 1

    async def serve() -> None:
        addrs = await sim.start(host, port, admin_port, tlcp=tlcp)
        print(f"simulator: platform {addrs.platform[0]}:{addrs.platform[1]}, admin {addrs.admin_url}", flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await sim.stop()

    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve())
    except OSError as exc:  # the port is taken, the address is not ours
        print(f"ybgate sim: cannot listen on {host}:{port}/{admin_port}: {_reason(exc)}", file=sys.stderr)
        return 1
    return 0


def _reason(exc: BaseException) -> str:
    """What went wrong in words: an OSError's strerror and file, a GatewayError's message."""
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.filename}: {exc.strerror}" if exc.filename else exc.strerror
    return str(getattr(exc, "message", exc))
