"""Health over MQTT against a real mosquitto: status, health documents with ids, events queued across a broker
restart, and the last will when the gateway is killed with SIGKILL."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from gateway.health.metrics import Metrics
from gateway.health.mqtt import HealthPublisher, MqttSettings
from gateway.sim.server import Simulator

from conftest import ybgate_process

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.conf = workdir / "mosquitto.conf"
        self.conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        for _ in range(100):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 0.1):
                return
            if self.proc.poll() is not None:
                raise RuntimeError("mosquitto exited")
            time.sleep(0.05)
        raise RuntimeError("mosquitto did not listen")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    assert os.path.exists(MOSQUITTO), "mosquitto must be installed (apt-get install mosquitto)"
    b = Broker(tmp_path)
    b.start()
    yield b
    b.stop()


class Subscriber:
    def __init__(self, port: int, topic: str) -> None:
        self.port, self.topic = port, topic
        self.messages: asyncio.Queue[tuple[str, dict[str, Any], bool]] = asyncio.Queue()

    async def run(self, ready: asyncio.Event) -> None:
        async with aiomqtt.Client("127.0.0.1", self.port, identifier=f"test-sub-{os.getpid()}") as client:
            await client.subscribe(self.topic, qos=1)
            ready.set()
            async for msg in client.messages:
                self.messages.put_nowait((str(msg.topic), json.loads(msg.payload), bool(msg.retain)))

    async def expect(self, topic_suffix: str, within: float = 10.0, **match: Any) -> dict[str, Any]:
        async with asyncio.timeout(within):
            while True:
                topic, doc, _ = await self.messages.get()
                if topic.endswith(topic_suffix) and all(doc.get(k) == v for k, v in match.items()):
                    return doc


@contextlib.asynccontextmanager
async def subscribed(port: int, topic: str) -> AsyncIterator[Subscriber]:
    sub = Subscriber(port, topic)
    ready = asyncio.Event()
    task = asyncio.create_task(sub.run(ready))
    await asyncio.wait_for(ready.wait(), 10)
    try:
        yield sub
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
            await task


async def test_status_health_events_and_clean_stop(broker: Broker) -> None:
    metrics = Metrics("t")
    pub = HealthPublisher(
        MqttSettings("127.0.0.1", broker.port, topic_prefix="t1", client_id="gw-t1", interval=0.3),
        lambda: {"in_flight": 0},
        metrics,
    )
    async with subscribed(broker.port, "t1/#") as sub:
        await pub.start()
        assert (await sub.expect("/status"))["state"] == "online"
        first = await sub.expect("/health")
        second = await sub.expect("/health")
        assert first["id"] != second["id"] and first["id"].startswith(pub.boot_id)
        assert first["in_flight"] == 0 and second["ts"] >= first["ts"]
        pub.event("reload_refused", file="policies/10-his.yaml", line=7)
        event = await sub.expect("/events")
        assert event["kind"] == "reload_refused" and event["line"] == 7
        assert metrics.mqtt_connected._value.get() == 1
        await pub.stop()
        assert await sub.expect("/status") == {"state": "offline", "reason": "stopped", "boot_id": pub.boot_id}


async def test_reconnects_after_broker_restart_and_delivers_queued_events(broker: Broker) -> None:
    pub = HealthPublisher(
        MqttSettings("127.0.0.1", broker.port, topic_prefix="t2", client_id="gw-t2", interval=30, backoff_max=1.0),
        lambda: {},
    )
    await pub.start()
    try:
        await asyncio.wait_for(pub.connected.wait(), 10)
        broker.stop()
        for _ in range(100):
            if not pub.connected.is_set():
                break
            await asyncio.sleep(0.05)
        pub.event("link_down", interface="eth1")  # raised while the broker is away
        broker.start()
        async with subscribed(broker.port, "t2/#") as sub:
            event = await sub.expect("/events", within=15, kind="link_down")
            assert event["interface"] == "eth1"
        assert pub.connects >= 2
    finally:
        await pub.stop()


async def test_last_will_when_the_gateway_is_killed(broker: Broker, sim: Simulator, short_tmp: Path) -> None:
    assert sim.addresses is not None
    host, port = sim.addresses.platform
    cfg = short_tmp / "ybgate.yaml"
    cfg.write_text(
        f"development: true\nstate_dir: {short_tmp}/state\nruntime_dir: {short_tmp}/run\nadmin: {{port: 0}}\n"
        f"upstreams: [{{name: sim, host: {host}, port: {port}, transport: tcp}}]\n"
        f"mqtt: {{enabled: true, port: {broker.port}, topic_prefix: t3, keepalive: 2, interval: 1}}\n"
    )
    async with subscribed(broker.port, "t3/#") as sub:
        proc = await ybgate_process("run", "--config", str(cfg))
        try:
            online = await sub.expect("/status", within=15, state="online")
            health = await sub.expect("/health", within=10)
            assert health["upstreams"][0]["name"] == "sim" and health["host"]["process_rss_bytes"] > 0
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
            will = await sub.expect("/status", within=10, state="offline")
            assert will == {"state": "offline", "reason": "lost", "boot_id": online["boot_id"]}
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
