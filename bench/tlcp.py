"""TLCP speed: ybgate's client against a Tongsuo server, next to a Tongsuo client against the same server,
measured in the same run, as ratios.

    python bench/tlcp.py [--handshakes 60] [--mbytes 4]

Full handshakes/s (no resumption) per suite, and bulk MB/s (the client sends N MB, the server echoes them)
for the CBC and GCM suites. The Tongsuo peer is tongsuopy's libssl driven through ctypes (the same peer the
interop tests use); everything runs on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import figures

from gateway.net.tlcp_stream import open_tlcp_connection
from gateway.tlcp.suites import ALL_SUITES, ECC_SM4_CBC_SM3, ECC_SM4_GCM_SM3, CipherSuite, KeyExchange
from tests.tlcp.peers import CLIENT, client_with_certs
from tests.tlcp.tongsuo_peer import LIB, _blocking, _context, _session, run_server


def serve(suite: CipherSuite, expect: int, connections: int, mutual: bool) -> tuple[int, threading.Thread]:
    listener = socket.create_server(("127.0.0.1", 0))
    t = threading.Thread(
        target=run_server,
        args=(listener, suite.code, expect),
        kwargs={"connections": connections, "verify_client": mutual},
        daemon=True,
    )
    t.start()
    return listener.getsockname()[1], t


def tongsuo_client(port: int, suite: CipherSuite, message: bytes, connections: int, mutual: bool) -> None:
    """A Tongsuo client making `connections` full handshakes (one context, no session offered)."""
    ctx = _context(server=False, suite=suite.code, side="client" if mutual else None, verify=True, ticket=False)
    try:
        for _ in range(connections):
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            _blocking(sock)
            ssl = LIB.SSL_new(ctx)
            try:
                LIB.SSL_set_fd(ssl, sock.fileno())
                if LIB.SSL_connect(ssl) != 1:
                    raise RuntimeError("Tongsuo client handshake failed")
                _session(ssl, sock, False, message)
            finally:
                LIB.SSL_free(ssl)
                sock.close()
    finally:
        LIB.SSL_CTX_free(ctx)


async def ours(port: int, suite: CipherSuite, message: bytes, connections: int, mutual: bool) -> None:
    base = client_with_certs() if mutual else CLIENT
    config = replace(base, cipher_suites=(suite,))
    for _ in range(connections):
        reader, writer = await open_tlcp_connection("127.0.0.1", port, config=config, timeout=30)
        writer.write(message)
        await writer.drain()
        await reader.readexactly(len(message))
        writer.close()
        await writer.wait_closed()


def timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def measure(suite: CipherSuite, message: bytes, connections: int, repeat: int = 1) -> tuple[float, float]:
    """Seconds for our client and for Tongsuo's, each against a fresh Tongsuo server; with `repeat`, the best
    of that many alternating runs of each (a short run on a shared machine is easily hit by a neighbour)."""
    mutual = suite.key_exchange is KeyExchange.ECDHE  # ECDHE needs client certificates
    mine = theirs = float("inf")
    for _ in range(repeat):
        port, t = serve(suite, len(message), connections, mutual)
        mine = min(mine, timed(lambda: asyncio.run(ours(port, suite, message, connections, mutual))))  # noqa: B023
        t.join(30)
        port, t = serve(suite, len(message), connections, mutual)
        theirs = min(theirs, timed(lambda: tongsuo_client(port, suite, message, connections, mutual)))  # noqa: B023
        t.join(30)
    return mine, theirs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--handshakes", type=int, default=60)
    ap.add_argument("--mbytes", type=float, default=4)
    ap.add_argument("--json", help="also write the figures as JSON to this file")
    a = ap.parse_args()
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}; peer: Tongsuo (tongsuopy) server")
    print(f"{'figure':<40}{'ybgate':>10}{'Tongsuo':>10}{'ratio':>8}")
    rows: list[figures.Figure] = []
    for suite in ALL_SUITES:
        mine, theirs = measure(suite, b"x", a.handshakes)
        rows.append(
            figures.Figure(
                f"TLCP handshakes/s {suite.name}",
                a.handshakes / mine,
                a.handshakes / theirs,
                "Tongsuo client, same server",
                target="ratio>=0.5",
            )
        )
        print(
            f"{'handshakes/s ' + suite.name:<40}{a.handshakes / mine:>10.1f}{a.handshakes / theirs:>10.1f}"
            f"{theirs / mine:>7.2f}x"
        )
    size = int(a.mbytes * 1024 * 1024)
    for suite in (ECC_SM4_CBC_SM3, ECC_SM4_GCM_SM3):
        mine, theirs = measure(suite, os.urandom(size), 1, repeat=3)
        mb = 2 * size / 1e6
        rows.append(
            figures.Figure(
                f"TLCP bulk MB/s {suite.name}",
                mb / mine,
                mb / theirs,
                "Tongsuo client, same server",
                target="ratio>=0.6",
            )
        )
        print(f"{'bulk MB/s ' + suite.name:<40}{mb / mine:>10.1f}{mb / theirs:>10.1f}{theirs / mine:>7.2f}x")
    figures.write(a.json, "tlcp", rows, handshakes=a.handshakes, mbytes=a.mbytes)


if __name__ == "__main__":
    main()
