"""The composition root: builds the daemon's parts from the configuration, starts them in dependency order and
stops them in reverse (gateway.app.parts), wires their events to metrics, MQTT and the status page
(gateway.app.events), and acts on signals: SIGHUP reloads, SIGTERM/SIGINT stop.

On stop the HIS listeners close first so no new work arrives, in-flight requests drain until the deadline, then
the relay, the outbox and audit log, and the upstreams stop. Signal handlers only set flags; the main task acts.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import time
from pathlib import Path
from typing import Any

import structlog

from gateway import __version__
from gateway.app.assembly import metered_transport, mqtt_settings, profile_codecs
from gateway.app.callback import CallbackListener
from gateway.app.events import EventSink, to_metrics, to_mqtt, to_recent
from gateway.app.link import LinkWatch
from gateway.app.listeners import AdminListener, ControlListener, HisListeners
from gateway.app.parts import Common, Deadline, Parts, TaskPart
from gateway.app.policy import FirewallDrift, PolicyPart
from gateway.app.recon import ReconPart
from gateway.app.relay import RelayPart
from gateway.app.rotation import rotate
from gateway.app.status import status_document
from gateway.app.storage import Storage
from gateway.app.upstreams import Upstreams
from gateway.audit.log import AuditLog
from gateway.config import Config, load_config
from gateway.config_marks import keep_running
from gateway.errors import ConfigError, GatewayError, RequestError
from gateway.health.checks import HealthChecks
from gateway.health.host import HostSampler
from gateway.health.lastexit import read_last_exit
from gateway.health.metrics import Metrics
from gateway.health.mqtt import HealthPublisher
from gateway.health.recent import Recent
from gateway.health.systemd import Notifier
from gateway.identity import identity_cert_figures
from gateway.net.connections import KeepAlivePool
from gateway.net.pool import UpstreamFailover
from gateway.net.transport import TcpTransport, Transport
from gateway.platform.msgids import MsgidMaker
from gateway.policy.gate import PolicyGate
from gateway.recon.run import Reconciler
from gateway.recon.schedule import ReconSchedule
from gateway.relay.durable import DurableRelay
from gateway.relay.outbox import SqliteOutbox
from gateway.relay.pg_outbox import PgOutbox
from gateway.relay.session import SignInSession

log = structlog.get_logger("gateway.daemon")


class Daemon:
    def __init__(
        self,
        config: Config,
        *,
        transport: Transport | None = None,
        api_socket: socket.socket | None = None,
        notifier: Notifier | None = None,
        config_path: Path | None = None,
    ) -> None:
        self.config, self.config_path = config, config_path
        self._given_transport = transport
        self.transport: Transport = transport or TcpTransport()
        self.metrics, self.recent = Metrics(__version__), Recent()
        self.notifier = notifier or Notifier({})
        self._api_socket = api_socket
        self._stop, self._reload = asyncio.Event(), asyncio.Event()
        self.started_at = time.monotonic()  # uptime: a wall-clock step must not move it
        self.deadline, self.parts = Deadline(), Parts()
        #: what the parts report; metrics and the status page's recent errors hear it, MQTT too when it is on
        self.events = EventSink()
        self.events.subscribe(to_metrics(self.metrics))
        self.events.subscribe(to_recent(self.recent))
        self.msgids = MsgidMaker()
        self.policy = PolicyPart(lambda: self.config, self.metrics, self.events)
        self.host: HostSampler | None = None
        self.mqtt: HealthPublisher | None = None
        self.upstreams: Upstreams | None = None
        self.storage: Storage | None = None
        self.relay_part: RelayPart | None = None
        self.recon_part: ReconPart | None = None
        self.callback: CallbackListener | None = None
        self.admin: AdminListener | None = None
        self.his: HisListeners | None = None
        self.checks: HealthChecks | None = None
        self.link: LinkWatch | None = None

    async def start(self) -> None:
        """Start every part in dependency order; if one fails, the ones already started are stopped (in reverse)
        before the error goes on."""
        try:
            await self._start_parts()
        except BaseException:
            self.deadline.set(10.0)
            await self.parts.stop()
            raise
        cfg = self.config
        self.notifier.ready(f"serving {cfg.api_socket}; upstreams {', '.join(u.name for u in cfg.upstreams)}")
        log.info(
            "ready",
            version=__version__,
            socket=str(cfg.api_socket),
            activated=self._api_socket is not None,
            admin=f"{self.admin_address[0]}:{self.admin_address[1]}" if self.admin_address else None,
            tcp=[f"{t.host}:{t.port}" for t in cfg.api.tcp],
            upstreams=[f"{u.name}={u.host}:{u.port}" for u in cfg.upstreams],
        )

    async def _start_parts(self) -> None:
        cfg, parts, metrics, events = self.config, self.parts, self.metrics, self.events
        await parts.start(TaskPart("watchdog", self.notifier.watchdog_loop, self.deadline))
        await parts.start(self.policy)
        if self.policy.firewall is not None and cfg.policy is not None:
            drift = FirewallDrift(self.policy.firewall, cfg.policy.firewall.check_interval, metrics, events)
            await parts.start(TaskPart(drift.name, drift.run, self.deadline))
        cfg.state_dir.mkdir(parents=True, exist_ok=True, mode=0o750)
        if self._given_transport is None:
            self.transport = metered_transport(cfg, metrics, self._handshake_done)
        self.host = HostSampler(cfg.state_dir)
        metrics.add_host(self.host)
        metrics.add_previous_exit(read_last_exit(cfg.state_dir))
        if cfg.mqtt.enabled:
            # Settings (and the secret file) are read before anything listens: a bad one stops the start.
            self.mqtt = HealthPublisher(mqtt_settings(cfg), self.health_document, metrics)
            events.subscribe(to_mqtt(self.mqtt))
        self.upstreams = await parts.start(Upstreams(cfg, self.transport, events, self.deadline))
        metrics.add_pool(self.upstreams.pool)
        codecs = profile_codecs(cfg)
        self.storage = storage = await parts.start(Storage(cfg, self.mqtt))
        storage.export(metrics)
        # One minter for every message the gateway sends itself, its position kept across restarts.
        try:
            self.msgids = storage.minter()
        except ValueError as exc:
            raise GatewayError(str(exc)) from None
        common = Common(metrics, events, self.deadline)
        relay = RelayPart(
            cfg, common, codecs=codecs, upstreams=self.upstreams, outbox=storage.outbox, msgids=self.msgids
        )
        # What a previous run left unfinished is settled (in start) before any new request is taken.
        self.relay_part = await parts.start(relay)
        if cfg.recon.enabled and cfg.session is not None:
            recon = ReconPart(cfg, common, outbox=storage.outbox, relay=relay.relay, msgids=self.msgids)
            self.recon_part = await parts.start(recon)
        await self._start_faces(storage, relay)

    async def _start_faces(self, storage: Storage, relay: RelayPart) -> None:
        """The listeners, then the watches that report on what is running."""
        cfg, parts, metrics = self.config, self.parts, self.metrics
        if cfg.admin.enabled:
            self.admin = await parts.start(AdminListener(cfg, metrics, self.status))
        await parts.start(ControlListener(cfg.control_socket, self._resolve, self.reload_policy, self._reconcile))
        if cfg.callback is not None and cfg.callback.enabled:
            on_result = metrics.callbacks.labels
            listener = CallbackListener(cfg, self.gate.policy, lambda result: on_result(result).inc())
            self.callback = await parts.start(listener)
        his = HisListeners(
            cfg,
            relay.relay,
            metrics=metrics,
            recent=self.recent,
            gate=self.gate,
            sock=self._api_socket,
            deadline=self.deadline,
        )
        self.his = await parts.start(his)
        for task in storage.housekeeping(lambda: self.config.relay.retention_days, self.deadline):
            await parts.start(task)
        identity = cfg.identity
        self.checks = checks = HealthChecks(
            metrics,
            storage.outbox.summary,
            (lambda: identity_cert_figures(identity)) if identity is not None else None,
            self.events.emit,
        )
        await checks.refresh_outbox()
        interval, cert_interval = cfg.health.check_interval, cfg.health.cert_check_interval
        await parts.start(TaskPart("health-checks", lambda: checks.run(interval, cert_interval), self.deadline))
        if self.mqtt is not None:
            await parts.start(self.mqtt)
        if cfg.health.interface:
            hosts = [u.host for u in cfg.upstreams]
            self.link = await parts.start(LinkWatch(cfg.health.interface, hosts, metrics, self.events))

    # -- what tests, the CLI and the API reach through the daemon -------------------------------------------------

    @property
    def gate(self) -> PolicyGate:
        return self.policy.gate

    @property
    def pool(self) -> UpstreamFailover | None:
        return self.upstreams.pool if self.upstreams is not None else None

    @property
    def connections(self) -> KeepAlivePool | None:
        return self.upstreams.connections if self.upstreams is not None else None

    @property
    def outbox(self) -> SqliteOutbox | PgOutbox | None:
        return self.storage.outbox if self.storage is not None else None

    @property
    def audit(self) -> AuditLog | None:
        return self.storage.audit if self.storage is not None else None

    @property
    def relay(self) -> DurableRelay | None:
        return self.relay_part.relay if self.relay_part is not None else None

    @property
    def session(self) -> SignInSession | None:
        return self.relay_part.session if self.relay_part is not None else None

    @property
    def recon(self) -> Reconciler | None:
        return self.recon_part.reconciler if self.recon_part is not None else None

    @property
    def recon_schedule(self) -> ReconSchedule | None:
        return self.recon_part.schedule if self.recon_part is not None else None

    @property
    def admin_address(self) -> tuple[str, int] | None:
        return self.admin.address if self.admin is not None else None

    @property
    def callback_address(self) -> tuple[str, int] | None:
        return self.callback.address if self.callback is not None else None

    @property
    def api_tcp_addresses(self) -> list[tuple[str, int]]:
        """Where the HIS API's TCP listeners are (the port the kernel chose for a configured 0)."""
        return self.his.tcp_addresses if self.his is not None else []

    def status(self) -> dict[str, Any]:
        return status_document(
            self.config,
            started_at=self.started_at,
            link_watch=self.link,
            upstreams=self.upstreams,
            his=self.his,
            recent=self.recent,
            gate=self.gate,
            checks=self.checks,
        )

    def _handshake_done(self, upstream: str, resumed: bool) -> None:
        # the pool shows session reuse per upstream; it exists from the upstreams part on, before any handshake
        if self.upstreams is not None:
            self.upstreams.pool.handshake(upstream, resumed)

    def health_document(self) -> dict[str, Any]:
        doc = self.status()
        if self.host is not None:
            doc["host"] = self.host.sample().as_dict()
        return doc

    async def _resolve(self, msgid: str, action: str, reason: str) -> dict[str, Any]:
        assert self.relay is not None
        row = await self.relay.resolve(msgid, action, reason)
        if self.checks is not None:
            await self.checks.refresh_outbox()
        return {"msgid": row.msgid, "infno": row.infno, "state": row.state.value, "outcome": row.outcome}

    async def _reconcile(self, day: str) -> dict[str, Any]:
        if self.recon_part is None:
            raise RequestError("reconciliation is not enabled (recon.enabled in the config)", http_status=409)
        return await self.recon_part.reconcile(day)

    # -- reload ------------------------------------------------------------------------------------------------

    def reload_identity(self) -> str:
        """Certificate rotation: validate the identity files as `certs check` would and hand them to every part
        that holds the identity: the upstream tunnels (new connections), the callback listener (new handshakes)
        and the audit signer (which records the switch in the chain). Established tunnels finish undisturbed. A
        bad new set is refused, and every part keeps the running one."""
        holders = [h for h in (self.upstreams, self.callback, self.storage) if h is not None]
        if self.config.identity is None:
            return "unchanged"
        result = rotate(self.config.identity, holders, self.metrics, self.events)
        if result == "refused":
            return result
        if self.checks is not None:
            self.checks.check_certs()
        return "applied"

    def reload_policy(self) -> dict[str, Any]:
        """Load the policy again; a bad one is refused and the one in force stays."""
        return self.policy.reload()

    def reload(self) -> list[str]:
        """Re-read the configuration file. A bad file changes nothing. What the marks in gateway.config call LIVE
        changes now; returns the RESTART fields that changed (they keep their running values until then)."""
        if self.config_path is None:
            return []
        self.notifier.notify(f"RELOADING=1\nMONOTONIC_USEC={time.monotonic_ns() // 1000}")
        try:
            new = load_config(self.config_path)
        except ConfigError as err:
            return self._refuse_reload(err.lines())
        old = self.config
        self.config, needs_restart = keep_running(old, new)
        self._apply_live(self.config, old)
        identity = self.reload_identity()
        pol = self.reload_policy()
        self.metrics.reloads.labels("applied").inc()
        log.info("reloaded", file=str(self.config_path), needs_restart=needs_restart, policy=pol["result"])
        status = "reloaded" + (f"; restart to apply {', '.join(needs_restart)}" if needs_restart else "")
        if identity == "refused":
            status += "; new certificates refused: the running ones stay"
        if pol["result"] == "refused":
            status += "; policy refused: the policy in force stays"
        self.notifier.notify(f"READY=1\nSTATUS={status}")
        return needs_restart

    def _refuse_reload(self, problems: list[str]) -> list[str]:
        self.metrics.reloads.labels("refused").inc()
        log.error("reload_refused", problems=problems, file=str(self.config_path))
        self.events.emit("reload_refused", {"problems": problems}, error=problems[0])
        # The policy files are separate: a good policy edit is not held back by a bad config edit.
        pol = self.reload_policy()
        self.notifier.notify(
            "READY=1\nSTATUS=reload refused: the running configuration stays in force"
            + ("; policy refused" if pol["result"] == "refused" else "")
        )
        return []

    def _apply_live(self, new: Config, old: Config) -> None:
        """The fields marked LIVE, to the parts that use them (the identity and the policy paths: reload_identity
        and reload_policy)."""
        if self.his is not None:
            self.his.configure(new)
        if new.logging != old.logging:
            from gateway.logging import configure

            configure(new.logging.level, new.logging.format)
        if self.storage is not None:
            self.storage.configure(new)

    # -- lifecycle ---------------------------------------------------------------------------------------------

    async def stop(self, grace: float = 10.0) -> None:
        self.deadline.set(grace)
        self.notifier.stopping()
        await self.parts.stop()

    def request_stop(self) -> None:
        self._stop.set()

    def request_reload(self) -> None:
        self._reload.set()

    async def wait_for_signal(self) -> None:
        """Serve until SIGTERM/SIGINT; act on SIGHUP (reload) in between. Handlers only set flags."""
        self.install_signal_handlers()
        while not self._stop.is_set():
            stop = asyncio.ensure_future(self._stop.wait())
            reload = asyncio.ensure_future(self._reload.wait())
            await asyncio.wait({stop, reload}, return_when=asyncio.FIRST_COMPLETED)
            for fut in (stop, reload):
                fut.cancel()
            if self._reload.is_set() and not self._stop.is_set():
                self._reload.clear()
                self.reload()
        log.info("stopping")

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        loop.add_signal_handler(signal.SIGHUP, self.request_reload)

    async def run(self) -> None:
        """Start, serve until SIGTERM/SIGINT, then stop gracefully; a start that fails half-way stops what it
        had started."""
        # Before start: the API socket listens early in start(), and a SIGTERM from then on (systemd stopping a
        # unit that is still starting) must mean a clean stop, not death by the default handler.
        self.install_signal_handlers()
        try:
            await self.start()
            await self.wait_for_signal()
        finally:
            await self.stop()
