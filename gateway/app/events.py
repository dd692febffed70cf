"""One sink for what the daemon's parts report: relay events, upstream switches, link and route changes, refused
reloads, certificate warnings, firewall drift, reconciliation results. Parts emit; metrics, MQTT and the recent
errors of the status page subscribe, each in one place, instead of every emitter asking who is listening."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gateway.health.metrics import Metrics
from gateway.health.mqtt import HealthPublisher
from gateway.health.recent import Recent


@dataclass(frozen=True)
class Event:
    kind: str
    detail: dict[str, Any] = field(default_factory=dict)
    #: set for a failure ops should see on the status page: its one-line reason
    error: str | None = None
    #: which part emitted it ("relay": counted per kind in ybgate_relay_events_total)
    source: str = ""


Subscriber = Callable[[Event], None]


class EventSink:
    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Hear every event from now on; returns what ends the subscription."""
        self._subscribers.append(subscriber)
        return lambda: self._subscribers.remove(subscriber)

    def emit(
        self, kind: str, detail: dict[str, Any] | None = None, *, error: str | None = None, source: str = ""
    ) -> None:
        event = Event(kind, detail or {}, error, source)
        for subscriber in list(self._subscribers):
            subscriber(event)


def to_metrics(metrics: Metrics) -> Subscriber:
    def hear(event: Event) -> None:
        if event.source == "relay":
            metrics.relay_events.labels(event.kind).inc()
        elif event.kind == "upstream_switched":
            metrics.failovers.labels(event.detail["was"], event.detail["to"]).inc()

    return hear


def to_recent(recent: Recent) -> Subscriber:
    def hear(event: Event) -> None:
        if event.error is not None:
            recent.error(event.kind, event.error)

    return hear


def to_mqtt(mqtt: HealthPublisher) -> Subscriber:
    return lambda event: mqtt.event(event.kind, **event.detail)
