"""The gateway's Prometheus metrics, in a registry of its own (tests can build as many as they like)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from gateway.health.host import HostSampler
from gateway.health.lastexit import LastExit
from gateway.relay.states import RowState

# HIS-facing latency spans sub-millisecond refusals to platform answers near the HIS's timeout.
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)

CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    def __init__(self, version: str = "") -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.info = Info("ybgate_build", "ybgate version", registry=r)
        self.info.info({"version": version})
        self.requests = Counter(
            "ybgate_requests_total",
            "HIS requests by transaction and outcome (answered, or the gateway_error kind)",
            ["infno", "outcome"],
            registry=r,
        )
        self.refusals = Counter(
            "ybgate_refusals_total",
            "requests refused before they had a valid envelope, by kind (bad_http, body_too_large, …)",
            ["kind"],
            registry=r,
        )
        self.request_seconds = Histogram(
            "ybgate_request_seconds",
            "HIS-facing latency of relayed requests",
            ["infno"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.upstream_seconds = Histogram(
            "ybgate_upstream_seconds",
            "platform round-trip time by upstream",
            ["upstream"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge("ybgate_requests_in_flight", "HIS requests being relayed now", registry=r)
        self.started = Gauge("ybgate_start_time_seconds", "when this process started (Unix time)", registry=r)
        self.started.set_to_current_time()

        self.link_up = Gauge(
            "ybgate_link_up", "1 while the 专网 interface is up with carrier", ["interface"], registry=r
        )
        self.route_ok = Gauge(
            "ybgate_upstream_route_ok",
            "1 while the route to an upstream leaves by the 专网 interface",
            ["address"],
            registry=r,
        )
        self.relay_events = Counter(
            "ybgate_relay_events_total",
            "relay resolutions: in_doubt (sent, no answer), reversed (冲正 done), left_in_doubt (needs ops)",
            ["kind"],
            registry=r,
        )
        self.reloads = Counter(
            "ybgate_config_reloads_total", "configuration reloads by result (applied, refused)", ["result"], registry=r
        )
        self.failovers = Counter(
            "ybgate_upstream_switches_total", "traffic moved from one upstream to another", ["from", "to"], registry=r
        )
        self.tlcp_handshakes = Counter(
            "ybgate_tlcp_handshakes_total",
            "completed TLCP handshakes to the platform by upstream and kind (full: SM2 work; resumed: a kept session)",
            ["upstream", "kind"],
            registry=r,
        )
        self.tlcp_client_auth_learned = Counter(
            "ybgate_tlcp_client_auth_learned_total",
            "an upstream refused the client-auth form first tried and accepted this one (now used first for it)",
            ["upstream", "client_cert_shape", "certificate_verify"],
            registry=r,
        )
        self.clock_skew = Gauge(
            "ybgate_platform_clock_skew_seconds",
            "platform clock minus ours at its last answer (TIF profiles refuse requests beyond their allowance)",
            ["upstream"],
            registry=r,
        )
        self.mqtt_connected = Gauge("ybgate_mqtt_connected", "1 while connected to the MQTT broker", registry=r)
        self.mqtt_dropped = Counter(
            "ybgate_mqtt_dropped_total", "health messages dropped because the broker was away too long", registry=r
        )
        self.access_log_dropped = Counter(
            "ybgate_access_log_dropped_total",
            "access log lines dropped because its journal or file could not keep up",
            registry=r,
        )

        self.policy_denials = Counter(
            "ybgate_policy_denials_total",
            "HIS requests refused by the access policy, by kind (policy_denied, maintenance) and client rule",
            ["kind", "client"],
            registry=r,
        )
        self.envelope_completions = Counter(
            "ybgate_envelope_completions_total",
            "envelope fields the gateway filled for policy clients that ask for completion",
            ["client"],
            registry=r,
        )
        self.policy_reloads = Counter(
            "ybgate_policy_reloads_total", "policy reloads by result (applied, refused)", ["result"], registry=r
        )
        self.policy_info = Gauge("ybgate_policy_loaded", "1 for the policy version in force", ["version"], registry=r)
        self.callbacks = Counter(
            "ybgate_callbacks_total",
            "platform callbacks by result (answered, his_unreachable, refused_source, refused_method, refused_body)",
            ["result"],
            registry=r,
        )
        self.firewall_drops = Gauge(
            "ybgate_firewall_dropped_packets",
            "packets the ybgate nftables table dropped on the 专网 interface, by direction",
            ["direction"],
            registry=r,
        )
        self.firewall_drift = Gauge(
            "ybgate_firewall_drift", "1 while the kernel's ybgate table differs from what was applied", registry=r
        )
        self.firewall_checks = Counter(
            "ybgate_firewall_checks_total", "firewall read-backs by result (ok, drift, error)", ["result"], registry=r
        )
        self.cert_days_left = Gauge(
            "ybgate_cert_days_left",
            "days until a certificate of the gateway's identity expires (negative: expired)",
            ["cert", "subject"],
            registry=r,
        )
        self.recon_runs = Counter(
            "ybgate_recon_runs_total",
            "reconciliation runs by result (balanced, differences, incomplete)",
            ["result"],
            registry=r,
        )
        self.recon_differences = Gauge(
            "ybgate_recon_differences", "differences found by the last reconciliation run", registry=r
        )
        self.recon_last_run = Gauge(
            "ybgate_recon_last_run_timestamp_seconds", "when the last reconciliation run finished", registry=r
        )
        self.loop_lag = Gauge(
            "ybgate_event_loop_lag_seconds",
            "how late the health loop's last timer fired: a loop stalled past WatchdogSec is killed by systemd",
            registry=r,
        )
        self.cert_warnings = Counter(
            "ybgate_cert_expiry_warnings_total",
            "certificate expiry warnings raised, by threshold in days (0: expired)",
            ["threshold"],
            registry=r,
        )

    def add_outbox(self, view: Callable[[], OutboxFigures | None]) -> None:
        """Outbox depth and ages, computed at scrape time from the latest summary (ages keep growing between
        summaries, as they do in reality)."""
        self.registry.register(_OutboxCollector(view))

    def add_outbox_writes(self, failures: Callable[[], int]) -> None:
        """Outbox write failures, read from the outbox at scrape time: after a request was accepted they are
        answered "outcome unknown", not outbox_unavailable, so only this counter shows them all."""
        self.registry.register(_CountCollector("ybgate_outbox_write_failures", _WRITE_FAILURES_HELP, failures))

    def add_audit(self, view: Callable[[], AuditFigures | None]) -> None:
        """The audit chain's self-check and its writer's refused batches, read at scrape time (no series while
        the audit log is off)."""
        self.registry.register(_AuditCollector(view))

    def add_previous_exit(self, last: LastExit | None) -> None:
        """How systemd says the previous run ended (gateway/health/lastexit.py); no series when it did not say."""
        if last is None:
            return
        gauge = Gauge(
            "ybgate_previous_exit",
            "1, labelled with how systemd says the previous run of the service ended (result watchdog: killed for a "
            "stalled event loop)",
            ["result", "code", "status"],
            registry=self.registry,
        )
        gauge.labels(last.result, last.code, last.status).set(1)

    def add_host(self, sampler: HostSampler) -> None:
        """Sample host figures at scrape time (no background task, no stale values)."""
        self.registry.register(_HostCollector(sampler))

    def add_pool(self, pool: PoolView) -> None:
        self.registry.register(_PoolCollector(pool))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class OutboxFigures(Protocol):
    @property
    def counts(self) -> dict[str, int]: ...
    @property
    def oldest_unfinished(self) -> float | None: ...
    @property
    def oldest_in_doubt(self) -> float | None: ...


class _OutboxCollector(Collector):
    STATES = tuple(s.value for s in RowState)

    def __init__(self, view: Callable[[], OutboxFigures | None]) -> None:
        self.view = view

    def collect(self) -> Iterator[GaugeMetricFamily]:
        figures = self.view()
        if figures is None:
            return
        rows = GaugeMetricFamily(
            "ybgate_outbox_rows", "outbox rows by state (kept for the retention)", labels=["state"]
        )
        for state in self.STATES:
            rows.add_metric([state], figures.counts.get(state, 0))
        yield rows
        now = time.time()
        for name, since, what in (
            ("ybgate_outbox_oldest_unfinished_age_seconds", figures.oldest_unfinished, "unfinished"),
            ("ybgate_outbox_oldest_in_doubt_age_seconds", figures.oldest_in_doubt, "in-doubt"),
        ):
            age = 0.0 if since is None else max(0.0, now - since)
            yield GaugeMetricFamily(name, f"age of the oldest {what} outbox row (0: none)", value=age)


_WRITE_FAILURES_HELP = "outbox commit groups the disk refused (full, read-only, I/O error)"


@dataclass(frozen=True)
class AuditFigures:
    chain_ok: bool
    checked_at: float | None  # wall time of the last completed self-check round
    write_failures: int


class _AuditCollector(Collector):
    def __init__(self, view: Callable[[], AuditFigures | None]) -> None:
        self.view = view

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        figures = self.view()
        if figures is None:
            return
        yield GaugeMetricFamily(
            "ybgate_audit_chain_ok",
            "1 while every entry the running gateway appended links to the one before it; 0 once one does not",
            value=1 if figures.chain_ok else 0,
        )
        if figures.checked_at is not None:
            yield GaugeMetricFamily(
                "ybgate_audit_chain_checked_timestamp_seconds",
                "when the running gateway last completed a check of its audit chain",
                value=figures.checked_at,
            )
        yield CounterMetricFamily(
            "ybgate_audit_write_failures",
            "audit batches the disk refused (full, read-only, I/O error); each is kept and written again",
            value=figures.write_failures,
        )


class _CountCollector(Collector):
    def __init__(self, name: str, documentation: str, read: Callable[[], int]) -> None:
        self.name, self.documentation, self.read = name, documentation, read

    def collect(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily(self.name, self.documentation, value=self.read())


class PoolView(Protocol):
    def snapshot(self) -> list[dict[str, object]]: ...


_BREAKER_VALUE = {"closed": 0, "half_open": 1, "open": 2}


class _PoolCollector(Collector):
    def __init__(self, pool: PoolView) -> None:
        self.pool = pool

    def collect(self) -> Iterator[GaugeMetricFamily]:
        state = GaugeMetricFamily(
            "ybgate_breaker_state", "circuit breaker per upstream: 0 closed, 1 half-open, 2 open", labels=["upstream"]
        )
        active = GaugeMetricFamily("ybgate_upstream_active", "1 for the upstream taking traffic", labels=["upstream"])
        # The role as a label of its own series, so alert rules can tell "the backup is active" (a failover)
        # from "the primary is active" without the other series changing shape.
        info = GaugeMetricFamily(
            "ybgate_upstream_info", "1 per configured upstream, labelled with its role", labels=["upstream", "role"]
        )
        for snap in self.pool.snapshot():
            state.add_metric([str(snap["name"])], _BREAKER_VALUE[str(snap["breaker"])])
            active.add_metric([str(snap["name"])], 1 if snap["active"] else 0)
            info.add_metric([str(snap["name"]), str(snap["role"])], 1)
        yield state
        yield active
        yield info


class _HostCollector(Collector):
    def __init__(self, sampler: HostSampler) -> None:
        self.sampler = sampler

    def collect(self) -> Iterator[GaugeMetricFamily]:
        for name, value in self.sampler.sample().as_dict().items():
            if value is None:  # hidden from this process (see HostSampler): absent, not a false 0
                continue
            yield GaugeMetricFamily(f"ybgate_host_{name}", f"host figure {name} (psutil)", value=value)
