"""The daemon at rest: resident memory and CPU of an idle gateway (connected to the simulator, link watch and
MQTT health on, as on a 前置机; no traffic), next to a bare Python process running an idle asyncio loop,
measured in the same run.

    python bench/idle.py [--seconds 10] [--json out.json]

Both run as real processes; RSS is read with psutil after the gateway is ready and has settled, CPU is the
process's user+system time over the idle window. Traffic stays on loopback and a Unix socket.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
from pathlib import Path

import figures
import psutil
from relay import free_port, wait_for

BARE = "import asyncio; asyncio.run(asyncio.sleep(3600))"


def sample(pid: int) -> tuple[float, float]:
    proc = psutil.Process(pid)
    times = proc.cpu_times()
    return proc.memory_info().rss / 2**20, times.user + times.system


async def main(seconds: float, json_path: str | None) -> None:
    work = Path(tempfile.mkdtemp(prefix="ybg-idle-"))
    host, port = "127.0.0.1", free_port()
    sock = work / "run/api.sock"
    cfg = work / "ybgate.yaml"
    cfg.write_text(
        f"development: true\nstate_dir: {work}/state\nruntime_dir: {work}/run\n"
        f"upstreams: [{{name: sim, host: {host}, port: {port}, transport: tcp}}]\nlogging: {{level: warning}}\n"
        # as on a 前置机: the link watched through netlink, health to MQTT (no broker here: it keeps retrying)
        f"health: {{interface: lo}}\nmqtt: {{enabled: true, host: 127.0.0.1, port: {free_port()}}}\n"
    )
    quiet = {"stdout": asyncio.subprocess.DEVNULL, "stderr": asyncio.subprocess.DEVNULL}
    sim = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "sim", "--port", str(port), "--admin-port", str(free_port()), **quiet
    )
    gw = await asyncio.create_subprocess_exec(sys.executable, "-m", "gateway", "run", "--config", str(cfg), **quiet)
    bare = await asyncio.create_subprocess_exec(sys.executable, "-c", BARE, **quiet)
    try:
        await wait_for(lambda: asyncio.open_connection(host, port), "simulator")
        await wait_for(lambda: asyncio.open_unix_connection(str(sock)), "gateway")
        await asyncio.sleep(2.0)  # past start-up: imports done, first health checks and probes run
        _, gw_cpu0 = sample(gw.pid)
        _, bare_cpu0 = sample(bare.pid)
        await asyncio.sleep(seconds)
        gw_rss, gw_cpu1 = sample(gw.pid)
        bare_rss, bare_cpu1 = sample(bare.pid)
    finally:
        for proc in (gw, sim, bare):
            proc.terminate()
            await proc.wait()
        shutil.rmtree(work, ignore_errors=True)
    gw_pct = (gw_cpu1 - gw_cpu0) / seconds * 100
    bare_pct = (bare_cpu1 - bare_cpu0) / seconds * 100
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}; idle window {seconds:.0f} s")
    print(f"{'figure':<24}{'ybgate':>10}{'bare asyncio':>14}")
    print(f"{'RSS, MiB':<24}{gw_rss:>10.1f}{bare_rss:>14.1f}   target ≤ 60 MiB")
    print(f"{'CPU while idle, %':<24}{gw_pct:>10.2f}{bare_pct:>14.2f}")
    figures.write(
        json_path,
        "idle",
        [
            figures.Figure(
                "idle RSS MiB", gw_rss, bare_rss, "bare Python asyncio process", unit="MiB", target="max=60"
            ),
            figures.Figure("idle CPU %", gw_pct, bare_pct or None, "bare Python asyncio process", unit="%"),
        ],
        seconds=seconds,
    )


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--json", help="also write the figures as JSON to this file")
    a = ap.parse_args()
    asyncio.run(main(a.seconds, a.json))
