"""Health over MQTT: a retained online/offline status with a last will, periodic health documents, events.

aiomqtt does not reconnect by itself, so the publisher runs its own loop with exponential backoff and jitter.
QoS 1 can deliver a message twice across a reconnect: every message carries an `id` (boot id + sequence) so
subscribers can drop duplicates. Events raised while the broker is away wait in a bounded queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiomqtt
import structlog

from gateway.backoff import backoff
from gateway.health.metrics import Metrics
from gateway.tasks import end_tasks

log = structlog.get_logger("gateway.mqtt")


@dataclass(frozen=True)
class MqttSettings:
    host: str
    port: int = 1883
    topic_prefix: str = "ybgate"
    client_id: str = "ybgate"
    keepalive: int = 30
    interval: float = 30.0
    qos: int = 1
    username: str | None = None
    password: str | None = None
    tls: ssl.SSLContext | None = None
    queue_limit: int = 1000
    backoff_max: float = 60.0

    def __repr__(self) -> str:  # the password never reaches a log line
        return f"MqttSettings(host={self.host!r}, port={self.port}, topic_prefix={self.topic_prefix!r})"


class HealthPublisher:
    def __init__(
        self,
        settings: MqttSettings,
        health: Callable[[], dict[str, Any]],
        metrics: Metrics | None = None,
    ) -> None:
        self.s = settings
        self.health = health
        self.metrics = metrics
        self.boot_id = uuid.uuid4().hex[:12]
        self._seq = 0
        self._events: deque[dict[str, Any]] = deque()
        self._retained: dict[str, dict[str, Any]] = {}  # subtopic -> its latest document
        self._unsent: set[str] = set()  # subtopics to publish (again: on every new session)
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._client: aiomqtt.Client | None = None
        self.connected = asyncio.Event()
        self.connects = 0

    # -- topics and payloads --------------------------------------------------------------------------------

    @property
    def status_topic(self) -> str:
        return f"{self.s.topic_prefix}/status"

    def _stamp(self, doc: dict[str, Any]) -> bytes:
        self._seq += 1
        doc = {"id": f"{self.boot_id}-{self._seq}", "ts": round(time.time(), 3), **doc}
        return json.dumps(doc, ensure_ascii=False).encode("utf-8")

    def _status(self, state: str, reason: str) -> bytes:
        return json.dumps({"state": state, "reason": reason, "boot_id": self.boot_id}).encode()

    def event(self, kind: str, **detail: Any) -> None:
        """Queue an event (link down, failover, cert expiring, reload refused …) for publication."""
        if len(self._events) >= self.s.queue_limit:
            self._events.popleft()
            if self.metrics:
                self.metrics.mqtt_dropped.inc()
        self._events.append({"kind": kind, **detail})
        self._wake.set()

    def retain(self, subtopic: str, doc: dict[str, Any]) -> None:
        """Publish `doc` retained on <prefix>/<subtopic> (the latest wins: a subscriber that comes later, or
        after a broker restart the gateway reconnected from, still gets it)."""
        self._retained[subtopic] = doc
        self._unsent.add(subtopic)
        self._wake.set()

    # -- lifecycle ------------------------------------------------------------------------------------------

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="mqtt")

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        client = self._client
        if client is not None and self.connected.is_set():
            # A clean goodbye: the broker discards the will on a normal disconnect, so say offline ourselves.
            with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
                async with asyncio.timeout(2):
                    await client.publish(self.status_topic, self._status("offline", "stopped"), qos=1, retain=True)
        if self._task is not None:
            await end_tasks([self._task], 5.0)

    async def _run(self) -> None:
        failures = 0
        while not self._stopping:
            connects_before = self.connects
            try:
                await self._session()
            except aiomqtt.MqttError as exc:
                log.warning("mqtt_disconnected", broker=f"{self.s.host}:{self.s.port}", error=str(exc))
            finally:
                self._client = None
                self.connected.clear()
                if self.metrics:
                    self.metrics.mqtt_connected.set(0)
            if self._stopping:
                return
            if self.connects > connects_before:
                failures = 0  # it was up: a broker restart should not wait out an old backoff
            failures += 1
            await asyncio.sleep(backoff(failures, first=1.0, ceiling=self.s.backoff_max))

    async def _session(self) -> None:
        will = aiomqtt.Will(self.status_topic, self._status("offline", "lost"), qos=1, retain=True)
        async with aiomqtt.Client(
            self.s.host,
            self.s.port,
            identifier=self.s.client_id,
            username=self.s.username,
            password=self.s.password,
            will=will,
            keepalive=self.s.keepalive,
            tls_context=self.s.tls,
            timeout=10,
        ) as client:
            self._client = client
            self.connects += 1
            await client.publish(self.status_topic, self._status("online", "started"), qos=1, retain=True)
            self._unsent |= set(self._retained)  # a broker restart may have lost them
            self.connected.set()
            if self.metrics:
                self.metrics.mqtt_connected.set(1)
            log.info("mqtt_connected", broker=f"{self.s.host}:{self.s.port}", connects=self.connects)
            next_health = 0.0
            loop = asyncio.get_running_loop()
            while not self._stopping:
                # Cleared before the work, not after: what arrives during a publish wakes the next round at once
                # (it used to wait for the next health document).
                self._wake.clear()
                for subtopic in list(self._unsent):
                    self._unsent.discard(subtopic)  # before the await: a newer document re-adds it meanwhile
                    doc = self._retained[subtopic]
                    await client.publish(f"{self.s.topic_prefix}/{subtopic}", self._stamp(doc), qos=1, retain=True)
                while self._events:
                    # Publish before dropping it from the queue: a disconnect here keeps the event for later.
                    await client.publish(f"{self.s.topic_prefix}/events", self._stamp(self._events[0]), qos=self.s.qos)
                    self._events.popleft()
                if loop.time() >= next_health:
                    await client.publish(f"{self.s.topic_prefix}/health", self._stamp(self.health()), qos=self.s.qos)
                    next_health = loop.time() + self.s.interval
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(max(0.0, next_health - loop.time())):  # not wait_for: see net/transport
                        await self._wake.wait()
