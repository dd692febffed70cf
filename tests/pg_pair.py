"""Gateways of a pair in this process: real Daemons with their outbox in one PostgreSQL database (the session's
cluster, tests/pg_fixtures.py), each under a node name of its own, on the suite's simulator."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from gateway.app.daemon import Daemon
from gateway.app.demo import demo_config
from gateway.config import Config
from gateway.sim.server import Simulator

from conftest import Gateway


def on_postgresql(config: Config, dsn_file: Path, node: str | None = None, lease: float | None = None) -> Config:
    """`config` with its outbox in the database of `dsn_file`, as `node` of the pair (with its lease)."""
    settings = {"backend": "postgresql", "dsn_file": dsn_file, "node": node}
    if lease is not None:
        settings["lease"] = lease
    outbox = config.relay.outbox.model_copy(update=settings)
    return config.model_copy(update={"relay": config.relay.model_copy(update={"outbox": outbox})})


class Nodes:
    """Gateways of the pair by node name; the same name again is a restart on the same state directory."""

    def __init__(self, sim: Simulator, dsn_file: Path) -> None:
        self.sim, self.dsn_file = sim, dsn_file
        self.roots: dict[str, Path] = {}
        self.running: list[Gateway] = []

    async def start(self, node: str) -> Gateway:
        assert self.sim.addresses is not None
        root = self.roots.setdefault(node, Path(tempfile.mkdtemp(prefix="ybg-")))
        config = on_postgresql(demo_config(root, self.sim.addresses.platform, level="warning"), self.dsn_file, node)
        daemon = Daemon(config)
        await daemon.start()
        gw = Gateway(daemon, config, self.sim)
        self.running.append(gw)
        return gw

    async def stop(self, *gws: Gateway) -> None:
        """A clean stop: the chain ends with a signed checkpoint, as a verify after hours finds it."""
        for gw in gws:
            self.running.remove(gw)
            await gw.daemon.stop(grace=1.0)

    async def close(self) -> None:
        await self.stop(*self.running)
        for root in self.roots.values():
            shutil.rmtree(root, ignore_errors=True)
