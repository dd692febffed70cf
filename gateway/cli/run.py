"""`ybgate run`: the gateway daemon in the foreground, as systemd runs it."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable
from pathlib import Path

from gateway.cli import refusals as cli_refusals
from gateway.cli.config_file import read_config
from gateway.errors import GatewayError


def cmd_run(path: Path) -> int:
    # structlog imports rich whenever it is installed (a development tool pulls it in) for pretty tracebacks
    # the daemon never prints (its logs are JSON lines): 11 MiB of resident memory for nothing.
    sys.modules.setdefault("rich", None)  # type: ignore[arg-type]
    from gateway.app.daemon import Daemon
    from gateway.health.systemd import Notifier, listen_fds
    from gateway.logging import configure

    config = read_config(path)
    if config is None:
        return cli_refusals.EXIT_CONFIG
    problems = cli_refusals.problems(config)
    if problems:
        for line in problems:
            print(line, file=sys.stderr)
        print(f"ybgate: not starting: {path}: {len(problems)} problem(s) (see ybgate check)", file=sys.stderr)
        return cli_refusals.EXIT_CONFIG
    configure(config.logging.level, config.logging.format)
    # Socket activation: systemd holds the API socket across restarts, so no HIS connection is refused.
    fds = listen_fds()
    api_socket = fds.get("api") or next(iter(fds.values()), None)

    async def main() -> None:
        await Daemon(config, api_socket=api_socket, notifier=Notifier(), config_path=path).run()

    try:
        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            runner.run(main())
    except GatewayError as err:
        # A refusal to start (key file too open, identity invalid, socket in use): one clear line, exit 1.
        print(f"ybgate: not starting: {err.message}", file=sys.stderr)
        return 1
    except OSError as err:
        if err.filename is None:
            raise
        # A file that vanished or changed between the checks and its use: one line, as for a setting.
        print(f"ybgate: not starting: {err.filename}: {err.strerror}", file=sys.stderr)
        return cli_refusals.EXIT_CONFIG
    return 0


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop where it is installed (the relay's hot path costs less CPU on it: `ybgate bench relay
    --against` measures it), else the standard one. YBGATE_LOOP=asyncio asks for the standard one."""
    if os.environ.get("YBGATE_LOOP") == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop
