"""A gateway daemon as a real process for the reliability tests: started with `python -m gateway run`, waited
for through its API socket."""

from __future__ import annotations

import asyncio
import json
import socket
import sys
from pathlib import Path

from gateway.http1.unix_client import request

from conftest import PLATFORM_PATH, fresh


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_config(tmp: Path, platform: tuple[str, int], admin_port: int, extra: str = "") -> Path:
    host, port = platform
    cfg = tmp / "ybgate.yaml"
    cfg.write_text(
        f"development: true\nstate_dir: {tmp}/state\nruntime_dir: {tmp}/run\n"
        f"admin: {{port: {admin_port}}}\nlogging: {{level: error}}\n"
        f"upstreams: [{{name: sim, host: {host}, port: {port}, transport: tcp}}]\n{extra}"
    )
    return cfg


async def start(cfg: Path, env: dict[str, str] | None = None) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "run", "--config", str(cfg), stdout=asyncio.subprocess.DEVNULL, env=env
    )


async def ready(sock: str) -> str:
    """Wait for the daemon to answer; the sign_no of a sign-in through it."""
    for _ in range(300):
        try:
            reply = await request(
                "POST", PLATFORM_PATH, json.dumps(fresh("9001_signin_request.json")).encode(), unix_socket=sock
            )
        except OSError:
            await asyncio.sleep(0.05)
            continue
        return str(json.loads(reply.body)["output"]["signinoutb"]["sign_no"])
    raise AssertionError("the daemon did not start")
