"""Restart under load with socket activation: restart-to-ready time and HIS requests lost.

The bench holds the API socket as systemd would, runs the daemon on it, keeps HIS clients posting, and
restarts the daemon N times (SIGTERM, then a new process on the same socket). It prints the cold start time
(process start to READY=1) as the baseline, the restart-to-ready time (SIGTERM to the new READY=1), and how
many requests failed. Traffic stays on loopback and a Unix socket; everything stops by itself.

    python bench/restart.py [--restarts 10] [--clients 4]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import itertools
import json
import os
import shutil
import signal
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import figures

from gateway.http1.client import BadUpstreamResponse
from gateway.http1.unix_client import request
from gateway.sim.server import Simulator

PATH = "/fsi/api/rsfComIfsService/callService"
LAUNCHER = (
    "import os, sys; fd = int(sys.argv[1]); os.dup2(fd, 3); os.close(fd); "
    "os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS='1', LISTEN_FDNAMES='api'); "
    "os.execv(sys.executable, [sys.executable, '-m', 'gateway', 'run', '--config', sys.argv[2]])"
)


async def start(cfg: Path, listener: socket.socket, notify: Path) -> asyncio.subprocess.Process:
    fd = listener.fileno()
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        LAUNCHER,
        str(fd),
        str(cfg),
        pass_fds=(fd,),
        env=os.environ | {"NOTIFY_SOCKET": str(notify)},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )


async def wait_ready(sock: socket.socket) -> None:
    loop = asyncio.get_running_loop()
    while True:
        msg = await asyncio.wait_for(loop.sock_recv(sock, 4096), 30)
        if msg.startswith(b"READY=1"):
            return


async def main(restarts: int, clients: int, json_path: str | None = None) -> None:
    work = Path(tempfile.mkdtemp(prefix="ybg-bench-"))
    sim = Simulator()
    addrs = await sim.start()
    cfg = work / "ybgate.yaml"
    cfg.write_text(
        f"development: true\nstate_dir: {work}/state\nruntime_dir: {work}/run\nadmin: {{enabled: false}}\n"
        f"upstreams: [{{name: sim, host: {addrs.platform[0]}, port: {addrs.platform[1]}, transport: tcp}}]\n"
        "logging: {level: warning}\n"
    )
    (work / "run").mkdir()
    sock_path = str(work / "run/api.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(sock_path)
    listener.listen(1024)
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(work / "notify.sock"))
    notify.setblocking(False)
    template = json.loads((Path(__file__).parent.parent / "tests/data/platform/9001_signin_request.json").read_text())
    seq = itertools.count()

    def body() -> bytes:
        # A fresh msgid per request, as a HIS sends them: a repeated one would be answered from the outbox.
        n = next(seq)
        return json.dumps(
            template | {"msgid": f"H44030000001{20261125000000 + n // 10000:014d}{n % 10000:04d}"}
        ).encode()

    ok = failed = 0
    why: collections.Counter[str] = collections.Counter()
    stop = asyncio.Event()

    async def client() -> None:
        nonlocal ok, failed
        while not stop.is_set():
            try:
                reply = await request("POST", PATH, body(), unix_socket=sock_path, time_limit=30)
                # a gateway failure is HTTP 200 (platform-shaped) by default: the header tells it from an answer
                answered = reply.status == 200 and not reply.headers.get("x-ybgate-error")
                ok, failed = (ok + 1, failed) if answered else (ok, failed + 1)
                if not answered:
                    why[f"HTTP {reply.status}: {reply.body[:120].decode(errors='replace')}"] += 1
            except (OSError, TimeoutError, BadUpstreamResponse) as exc:  # refused, timed out, cut off unanswered
                failed += 1
                why[f"{type(exc).__name__}: {exc}"] += 1

    t0 = time.perf_counter()
    proc = await start(cfg, listener, work / "notify.sock")
    await wait_ready(notify)
    cold = time.perf_counter() - t0
    tasks = [asyncio.create_task(client()) for _ in range(clients)]
    ready_times = []
    try:
        for _ in range(restarts):
            await asyncio.sleep(1.0)
            t = time.perf_counter()
            proc.send_signal(signal.SIGTERM)
            await proc.wait()
            proc = await start(cfg, listener, work / "notify.sock")
            await wait_ready(notify)
            ready_times.append(time.perf_counter() - t)
        await asyncio.sleep(1.0)
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        proc.send_signal(signal.SIGTERM)
        await proc.wait()
        received = sum(1 for m in sim.ledger.messages if m.infno == "9001")
        await sim.stop()
        listener.close()
        shutil.rmtree(work, ignore_errors=True)
    med = statistics.median(ready_times)
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    print(f"{'figure':<34}{'value':>12}")
    print(f"{'cold start to READY (baseline)':<34}{cold * 1000:>10.0f} ms")
    print(f"{'restart to READY, median':<34}{med * 1000:>10.0f} ms   ({med / cold:.2f}x cold start)")
    print(f"{'restart to READY, max':<34}{max(ready_times) * 1000:>10.0f} ms")
    print(f"{'restarts':<34}{restarts:>12}")
    print(f"{'HIS requests answered':<34}{ok:>12}")
    print(f"{'HIS requests failed':<34}{failed:>12}")
    for reason, n in why.most_common():
        print(f"  {n} x {reason}")
    print(f"{'platform received (each once?)':<34}{received:>12}   {'yes' if received == ok else 'NO'}")
    figures.write(
        json_path,
        "restart",
        [
            figures.Figure("restart to READY ms, median", med * 1000, cold * 1000, "cold start to READY", unit="ms"),
            figures.Figure("HIS requests failed across restarts", failed, None, "", target="max=0"),
            figures.Figure("platform received minus answered", received - ok, None, "", target="max=0"),
        ],
        restarts=restarts,
        answered=ok,
    )


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--restarts", type=int, default=10)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--json", help="also write the figures as JSON to this file")
    a = ap.parse_args()
    asyncio.run(main(a.restarts, a.clients, a.json))
