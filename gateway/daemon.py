"""The composition root: builds every part from the configuration and owns their lifecycle.

Parts start in dependency order (transport → relay → API listeners) and stop in reverse: listeners close
first so no new work arrives, in-flight requests drain until the deadline, then the rest goes.
Signal handlers only set flags; the main task acts on them.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import time
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from gateway import __version__
from gateway.api.accesslog import AccessLog
from gateway.api.admin import AdminApi
from gateway.api.app import HisApi
from gateway.api.control import ControlApi
from gateway.assembly import (
    RESTART_FIELDS,
    build_transport,
    field_of,
    http_limits,
    mqtt_settings,
    profile_codecs,
    session_operator,
    tlcp_configs,
    upstream_targets,
    with_fields,
)
from gateway.audit.anchor import AnchorFile, AnchorSink
from gateway.audit.log import AuditLog, Outcome
from gateway.config import Config, load_config
from gateway.crypto import Certificate, sm3
from gateway.errors import ConfigError, GatewayError, RequestError
from gateway.health.checks import HealthChecks
from gateway.health.host import HostSampler
from gateway.health.metrics import Metrics
from gateway.health.mqtt import HealthPublisher
from gateway.health.recent import Recent
from gateway.health.systemd import Notifier
from gateway.http1 import Limits
from gateway.http1.listen import close_listener, somaxconn, start_tcp, start_unix
from gateway.http1.messages import Peer
from gateway.http1.server import Http1Server
from gateway.identity import identity_cert_figures
from gateway.net.breaker import BreakerPolicy
from gateway.net.connections import ConnectionPool
from gateway.net.pool import UpstreamPool
from gateway.net.tlcp_stream import start_tlcp_server
from gateway.net.tlcp_transport import TlcpTransport, ca_names, chain_verifier
from gateway.net.transport import TcpTransport, Transport
from gateway.platform.msgids import MsgidMaker
from gateway.platform.stmtfiles import GroupKey
from gateway.policy.engine import upstream_allowed
from gateway.policy.firewall import FirewallError
from gateway.policy.gate import PolicyGate
from gateway.policy.loader import PolicyError, load_policy
from gateway.policy.model import Policy
from gateway.policy.nft import Firewall, Nft
from gateway.recon.report import Report
from gateway.recon.report import paths as report_paths
from gateway.recon.run import Reconciler, ReconSettings
from gateway.recon.schedule import NotYet, ReconSchedule
from gateway.relay.backends import outbox_for
from gateway.relay.callback import CallbackRelay, HisTarget
from gateway.relay.durable import DurableRelay, Sender
from gateway.relay.forwarder import Forwarder
from gateway.relay.outbox import Row, SqliteOutbox
from gateway.relay.pg_outbox import PgOutbox
from gateway.relay.rules import rule_for
from gateway.relay.session import SignInSession
from gateway.tasks import end_tasks
from gateway.tlcp import MemorySessionCache, TLCPConfig

if TYPE_CHECKING:
    from gateway.health.link import LinkMonitor, LinkState

log = structlog.get_logger("gateway.daemon")

#: seconds a callback session may be resumed after its full handshake
CALLBACK_SESSION_LIFETIME = 300.0


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
        self.config = config
        self.config_path = config_path
        self._given_transport = transport
        self.transport: Transport = transport or TcpTransport()
        self.metrics = Metrics(__version__)
        self.recent = Recent()
        self.notifier = notifier or Notifier({})
        self._api_socket = api_socket
        self._listeners: list[tuple[asyncio.Server, Path | None]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._stop = asyncio.Event()
        self._reload = asyncio.Event()
        self.api: HisApi | None = None
        self.http: Http1Server | None = None
        self.admin_address: tuple[str, int] | None = None
        #: where the HIS API's TCP listeners are (the port the kernel chose for a configured 0)
        self.api_tcp_addresses: list[tuple[str, int]] = []
        self.started_at = time.monotonic()  # uptime: a wall-clock step must not move it
        self.host: HostSampler | None = None
        self.mqtt: HealthPublisher | None = None
        self.link: LinkMonitor | None = None
        self.pool: UpstreamPool | None = None
        self.outbox: SqliteOutbox | PgOutbox | None = None
        self.checks: HealthChecks | None = None
        self.gate = PolicyGate(None)
        self.firewall: Firewall | None = None
        self.callback_address: tuple[str, int] | None = None
        self.audit: AuditLog | None = None
        self.relay: DurableRelay | None = None
        self.session: SignInSession | None = None
        self.msgids = MsgidMaker()
        self.recon: Reconciler | None = None
        self.recon_schedule: ReconSchedule
        self.connections: ConnectionPool | None = None

    async def start(self) -> None:
        cfg = self.config
        # The policy first: a start with a bad policy (or an upstream outside it) stops before anything listens.
        self.gate = PolicyGate(self._load_policy(cfg))
        self._start_firewall(cfg)
        cfg.state_dir.mkdir(parents=True, exist_ok=True, mode=0o750)
        if self._given_transport is None:
            self.transport = build_transport(
                cfg,
                lambda upstream, resumed: self.metrics.tlcp_handshakes.labels(
                    upstream, "resumed" if resumed else "full"
                ).inc(),
                lambda upstream, choice: self.metrics.tlcp_client_auth_learned.labels(
                    upstream, choice.shape.value, choice.form.value
                ).inc(),
            )
        self.host = HostSampler(cfg.state_dir)
        self.metrics.add_host(self.host)
        if cfg.mqtt.enabled:
            # Settings (and the secret file) are read before anything listens: a bad one stops the start.
            self.mqtt = HealthPublisher(mqtt_settings(cfg), self.health_document, self.metrics)
        f = cfg.failover
        self.pool = UpstreamPool(
            upstream_targets(cfg),
            policy=BreakerPolicy(f.failures_to_open, f.cooldown, f.cooldown_max, f.successes_to_close),
            failback_after=f.failback_after,
            on_change=self._upstream_switched,
        )
        self.metrics.add_pool(self.pool)
        self.connections = ConnectionPool(self.transport)
        codecs = profile_codecs(cfg)
        # One platform behind every upstream: the primary's profile says how its transactions are classed.
        primary = next(u for u in cfg.upstreams if u.role == "primary")
        catalogue = codecs[primary.name].profile.catalogue
        # Keep-alive reuse only where a resend is harmless: a stale connection can swallow a request.
        forwarder = Forwarder(
            self.pool,
            self.connections,
            lambda e: rule_for(catalogue.classify(e.infno)).resend,
            codecs=codecs,
            on_skew=lambda upstream, skew: self.metrics.clock_skew.labels(upstream).set(round(skew, 3)),
        )
        self.outbox = outbox_for(
            cfg.relay.outbox.backend,
            state_dir=cfg.state_dir,
            dsn_file=cfg.relay.outbox.dsn_file,
            synchronous=cfg.relay.outbox_synchronous,
            digest=sm3,
        )
        await self.outbox.start()
        outbox = self.outbox
        self.metrics.add_outbox_writes(lambda: outbox.write_failures)
        await self._start_audit(cfg)
        sender: Sender = forwarder
        # One minter for every message the gateway sends itself, its position kept across restarts.
        try:
            self.msgids = MsgidMaker(high_water=cfg.state_dir / "msgid.seq")
        except ValueError as exc:
            raise GatewayError(str(exc)) from None
        if cfg.session is not None and cfg.session.sign_in:
            self.session = SignInSession(
                forwarder,
                session_operator(cfg.session),
                max_age=cfg.session.max_age,
                on_event=self._relay_event,
                msgids=self.msgids,
            )
            sender = self.session
        self.relay = DurableRelay(
            self.outbox,
            sender,
            catalogue,
            reversal_settle=cfg.relay.reversal_settle,
            on_event=self._relay_event,
            msgids=self.msgids,
            shared_poll=0.05 if cfg.relay.outbox.backend == "postgresql" else None,
        )
        # What a previous run left unfinished is settled before any new request is taken.
        await self.relay.recover()
        if cfg.recon.enabled and cfg.session is not None:
            self._start_recon(cfg)
        self.api = api = HisApi(
            self.relay,
            cfg.api.paths,
            default_timeout=cfg.api.default_timeout,
            max_timeout=cfg.api.max_timeout,
            metrics=self.metrics,
            recent=self.recent,
            gate=self.gate,
            completion_values=completion_values(cfg),
            signs_in=cfg.session is not None and cfg.session.sign_in,
            access=self._access_log(cfg),
        )
        await self._start_listeners(cfg, api)
        self._tasks.append(asyncio.create_task(self.notifier.watchdog_loop(), name="watchdog"))
        self._tasks.append(
            asyncio.create_task(self.pool.probe_loop(self.transport, cfg.failover.probe_interval), name="probes")
        )
        self._tasks.append(asyncio.create_task(self._prune_loop(), name="outbox-prune"))
        await self._start_checks(cfg)
        if self.mqtt is not None:
            await self.mqtt.start()
        if cfg.health.interface:
            # pyroute2 only where a link is watched: it is a tenth of the daemon's resident memory
            from gateway.health.link import LinkMonitor

            self.link = LinkMonitor(cfg.health.interface, [u.host for u in cfg.upstreams], self._link_changed)
            await self.link.start()
        summary = f"serving {cfg.api_socket}; upstreams {', '.join(u.name for u in cfg.upstreams)}"
        self.notifier.ready(summary)
        log.info(
            "ready",
            version=__version__,
            socket=str(cfg.api_socket),
            activated=self._api_socket is not None,
            admin=f"{self.admin_address[0]}:{self.admin_address[1]}" if self.admin_address else None,
            tcp=[f"{t.host}:{t.port}" for t in cfg.api.tcp],
            upstreams=[f"{u.name}={u.host}:{u.port}" for u in cfg.upstreams],
        )

    def status(self) -> dict[str, Any]:
        return {
            "version": __version__,
            "uptime_s": round(time.monotonic() - self.started_at, 1),
            "in_flight": self.http.in_flight if self.http else 0,
            "api_socket": str(self.config.api_socket),
            "link": None
            if self.link is None or self.link.state is None
            else {"interface": self.link.state.interface, "up": self.link.state.up, "routes": self.link.state.routes},
            "upstreams": [
                {"name": u.name, "role": u.role, "address": f"{u.host}:{u.port}", "transport": u.transport}
                | ({k: v for k, v in snap.items() if k in ("active", "breaker", "healthy_for_s")})
                for u, snap in zip(self.config.upstreams, self._pool_snapshot(), strict=True)
            ],
            "recent": self.recent.snapshot(),
            "policy": None
            if self.gate.policy is None
            else {"version": self.gate.policy.version, "files": list(self.gate.policy.files)},
        } | (self.checks.status() if self.checks is not None else {})

    def _link_changed(self, new: LinkState, old: LinkState | None) -> None:
        self.metrics.link_up.labels(new.interface).set(1 if new.up else 0)
        for address, via in new.routes.items():
            self.metrics.route_ok.labels(address).set(1 if via == new.interface else 0)
        if old is None:
            log.info("link_state", interface=new.interface, exists=new.exists, up=new.up, routes=new.routes)
            return
        if old.up != new.up:
            kind = "link_up" if new.up else "link_down"
            log.warning(kind, interface=new.interface, exists=new.exists)
            if self.mqtt is not None:
                self.mqtt.event(kind, interface=new.interface)
        for address, via in new.routes.items():
            if old.routes.get(address) != via:
                kind = "route_restored" if via == new.interface else "route_lost"
                log.warning(kind, upstream=address, via=via, interface=new.interface)
                if self.mqtt is not None:
                    self.mqtt.event(kind, upstream=address, via=via)
                if kind == "route_lost" and self.pool is not None:
                    # No route: fail over now rather than after the next requests time out.
                    for u in self.config.upstreams:
                        if u.host == address:
                            self.pool.trip(u.name)

    async def _prune_loop(self) -> None:
        """Drop finished rows past retention, hourly, in small batches (the writer never stalls for long)."""
        while True:
            if self.outbox is not None:
                cutoff = time.time() - self.config.relay.retention_days * 86400
                removed = await self.outbox.prune(cutoff)
                if removed:
                    log.info("outbox_pruned", rows=removed, retention_days=self.config.relay.retention_days)
            await asyncio.sleep(3600)

    async def _start_checks(self, cfg: Config) -> None:
        assert self.outbox is not None
        identity = cfg.identity
        self.checks = HealthChecks(
            self.metrics,
            self.outbox.summary,
            (lambda: identity_cert_figures(identity)) if identity is not None else None,
            self._event,
        )
        await self.checks.refresh_outbox()
        interval, cert_interval = cfg.health.check_interval, cfg.health.cert_check_interval
        self._tasks.append(asyncio.create_task(self.checks.run(interval, cert_interval), name="health-checks"))

    def _start_firewall(self, cfg: Config) -> None:
        fw = cfg.policy.firewall if cfg.policy is not None else None
        if fw is None or not fw.enabled or not fw.interface or self.gate.policy is None:
            return
        # The host is closed off before anything listens; a table nft refuses stops the start. On stop the
        # table stays: the host remains closed while the gateway restarts.
        self.firewall = Firewall(Nft(), fw.interface)
        seen = self.firewall.apply(self.gate.policy)
        log.info("firewall_applied", interface=fw.interface, rules=len(seen.skeleton))
        self._tasks.append(asyncio.create_task(self._firewall_loop(fw.check_interval), name="firewall-drift"))

    async def _firewall_loop(self, interval: float) -> None:
        """Read the table back every interval; an edit, flush or deletion by anyone is drift, reported (metrics,
        log, MQTT) but not silently undone: `ybgate firewall apply` or a reload puts it back."""
        was_ok = True
        while True:
            await asyncio.sleep(interval)
            if self.firewall is None:
                return
            try:
                check = await asyncio.to_thread(self.firewall.check)
            except FirewallError as err:
                self.metrics.firewall_checks.labels("error").inc()
                log.warning("firewall_check_failed", reason=err.message)
                continue
            self.metrics.firewall_drops.labels("in").set(check.seen.dropped_in)
            self.metrics.firewall_drops.labels("out").set(check.seen.dropped_out)
            self.metrics.firewall_drift.set(0 if check.ok else 1)
            self.metrics.firewall_checks.labels("ok" if check.ok else "drift").inc()
            if not check.ok and was_ok:
                log.error("firewall_drift", problem=check.problem, interface=self.firewall.interface)
                self.recent.error("firewall_drift", check.problem or "")
                self._event("firewall_drift", {"problem": check.problem})
            elif check.ok and not was_ok:
                log.info("firewall_drift_resolved", interface=self.firewall.interface)
            was_ok = check.ok

    async def _start_listeners(self, cfg: Config, api: HisApi) -> None:
        if cfg.admin.enabled:
            admin = AdminApi(self.metrics, self.status)
            srv = await start_tcp(Http1Server(admin.handle, admin.refuse, Limits()), cfg.admin.host, cfg.admin.port)
            self.admin_address = srv.sockets[0].getsockname()[:2]
            self._listeners.append((srv, None))
        await self._start_control(cfg)
        await self._start_callback(cfg)
        self.http = Http1Server(
            api.handle, api.refuse, http_limits(cfg), peer_error_responder=api.refuse_peer, early_responder=api.early
        )
        backlog = cfg.api.backlog
        cap = somaxconn()
        if cap is not None and cap < backlog:
            log.warning("api_backlog_capped", backlog=backlog, somaxconn=cap, fix="raise sysctl net.core.somaxconn")
        unix = await start_unix(
            self.http,
            cfg.api_socket,
            mode=cfg.api.socket_mode,
            group=cfg.api.socket_group,
            sock=self._api_socket,
            backlog=backlog,
        )
        # A handed-over socket belongs to systemd: never unlink it on stop.
        self._listeners.append((unix, None if self._api_socket else cfg.api_socket))
        self.api_tcp_addresses = []
        for tcp in cfg.api.tcp:
            srv = await start_tcp(self.http, tcp.host, tcp.port, backlog=backlog)
            self.api_tcp_addresses.append(srv.sockets[0].getsockname()[:2])
            log.info("api_tcp_listening", address=f"{tcp.host}:{self.api_tcp_addresses[-1][1]}")
            self._listeners.append((srv, None))

    def _anchor_sinks(self, cfg: Config) -> list[AnchorSink]:
        """Where each checkpoint's hash goes as it is made, outside the audit directory: the anchor file, and
        retained on MQTT when it is on (a later subscriber still gets the latest)."""
        sinks: list[AnchorSink] = []
        if cfg.audit.anchor_file is not None:
            sinks.append(AnchorFile(cfg.audit.anchor_file).publish)
        if self.mqtt is not None:
            mqtt = self.mqtt
            sinks.append(lambda anchor: mqtt.retain("audit/anchor", anchor.doc()))
        return sinks

    async def _start_audit(self, cfg: Config) -> None:
        """Open the chain (cutting a torn tail), append what the outbox finished after its last entry (a crash
        between the two commits), then hear every final outcome from the outbox as it commits."""
        if not cfg.audit.enabled or self.outbox is None:
            return
        signer = subject = None
        if cfg.identity is not None:
            from gateway.identity import load_identity

            creds = load_identity(cfg.identity).credentials
            signer, subject = creds.sign_key, creds.sign_cert.subject
        a = cfg.audit
        self.audit = AuditLog(
            cfg.audit_dir,
            rotate_bytes=a.rotate_bytes,
            checkpoint_every=a.checkpoint_every,
            checkpoint_interval=a.checkpoint_interval,
            signer=signer,
            signer_subject=subject,
            anchors=self._anchor_sinks(cfg),
        )
        self.audit.open()
        audited = self.audit.recent_keys()
        missing = [
            r
            for r in await self.outbox.finished_since(self.audit.catch_up_since())
            if (r.msgid, r.state.value) not in audited
        ]
        if missing:
            log.warning("audit_catch_up", entries=len(missing))
            self.audit.record(_outcome(r) for r in missing)
        audit = self.audit
        self.outbox.on_final = lambda rows: audit.record(_outcome(r) for r in rows)

    async def _start_callback(self, cfg: Config) -> None:
        """The platform's callbacks over mutual TLCP: our identity, its certificate pinned by the policy."""
        if cfg.callback is None or not cfg.callback.enabled:
            return
        policy = self.gate.policy
        if policy is None or policy.callback is None:
            raise PolicyError([(None, "callback", "callback.enabled needs a callback section in the policy")])
        pins = frozenset(subject for subject, _ in policy.callback_peers)
        if not pins or cfg.identity is None:
            raise PolicyError(
                [(None, "callback", "the callback listener needs the identity and callback_peers (pinned subjects)")]
            )
        from gateway.identity import load_identity

        ident = load_identity(cfg.identity)
        sources = list(policy.callback.sources) + [c for _, cidrs in policy.callback_peers for c in cidrs]
        fwd = cfg.callback.forward
        relay = CallbackRelay(
            HisTarget(fwd.host, fwd.port, fwd.path, fwd.timeout),
            sources,
            on_result=lambda result: self.metrics.callbacks.labels(result).inc(),
        )
        server = Http1Server(relay.handle, relay.refuse, Limits())

        async def on_tlcp(reader: asyncio.StreamReader, writer: Any) -> None:
            addr = writer.get_extra_info("peername") or ("?", 0)
            certs = writer.handshake.peer_certificates
            log.info("callback_connection", peer=f"{addr[0]}:{addr[1]}", subject=certs[0].subject if certs else None)
            await server.serve(reader, writer, Peer(address=f"{addr[0]}:{addr[1]}"))

        config = TLCPConfig(
            credentials=ident.credentials,
            verify_peer=chain_verifier(ident.roots, pins=pins),
            request_client_cert=True,
            require_client_cert=True,
            client_ca_names=ca_names(
                Certificate.load_pem_chain(cfg.callback.client_ca_bundle.read_bytes())
                if cfg.callback.client_ca_bundle is not None
                else ident.roots
            ),
            # Each callback comes on a connection of its own; a session is kept only after the peer passed the
            # chain and pin checks above, and only as long as a Tongsuo server keeps one by default.
            session_cache=MemorySessionCache(time.monotonic, lifetime=CALLBACK_SESSION_LIFETIME, size=256),
        )
        cb = policy.callback
        listener = await start_tlcp_server(on_tlcp, cb.address, cb.port, config=config)
        self.callback_address = listener.sockets[0].getsockname()[:2]
        self._listeners.append((listener, None))
        log.info("callback_listening", address=f"{cb.address}:{self.callback_address[1]}", pinned=sorted(pins))

    async def _start_control(self, cfg: Config) -> None:
        control = ControlApi(self._resolve, reload_policy=self.reload_policy, reconcile=self._reconcile)
        server = Http1Server(control.handle, control.refuse, Limits())
        self._listeners.append((await start_unix(server, cfg.control_socket, mode=0o600), cfg.control_socket))

    def _load_policy(self, cfg: Config) -> Policy | None:
        """The policy the configuration names, checked against the upstreams it will dial. Raises PolicyError."""
        paths = cfg.policy_paths
        if paths is None:
            log.warning("no_policy", detail="development mode without a policy: every local client may call everything")
            return None
        policy = load_policy(paths)
        outside = [f"{u.name} {u.host}:{u.port}" for u in cfg.upstreams if not upstream_allowed(policy, u.host, u.port)]
        if outside:
            raise PolicyError(
                [
                    (
                        None,
                        "upstreams",
                        f"not in the policy's upstream whitelist: {', '.join(outside)} (policy files: "
                        f"{', '.join(policy.files)}); only whitelisted IP:port pairs are ever dialled",
                    )
                ]
            )
        self.metrics.policy_info.clear()
        self.metrics.policy_info.labels(policy.version).set(1)
        log.info("policy_loaded", version=policy.version, files=list(policy.files), clients=len(policy.clients))
        return policy

    def reload_identity(self) -> str:
        """Certificate rotation: validate the identity files as `certs check` would and use them for new TLCP
        connections; established tunnels finish undisturbed. A bad new set is refused, the old one kept."""
        routes = getattr(self.transport, "routes", {})
        tlcp = next((t for t in routes.values() if isinstance(t, TlcpTransport)), None)
        if tlcp is None or self.config.identity is None:
            return "unchanged"
        reason = None
        try:
            configs = tlcp_configs(self.config)
        except (GatewayError, OSError, ValueError) as exc:
            reason = getattr(exc, "message", None) or str(exc)
        if reason is not None:
            self.metrics.reloads.labels("identity_refused").inc()
            self.recent.error("identity_refused", reason)
            log.error("identity_refused", reason=reason)
            self._event("identity_refused", {"reason": reason})
            return "refused"
        tlcp.configs = configs  # one assignment: a new connection sees the old set or the new one
        if self.checks is not None:
            self.checks.check_certs()
        log.info("identity_reloaded", upstreams=sorted(configs))
        return "applied"

    def reload_policy(self) -> dict[str, Any]:
        """Load the policy again; a bad one is refused and the one in force stays."""
        refused: PolicyError | None = None
        try:
            policy = self._load_policy(self.config)
            if self.firewall is not None and policy is not None:
                # The kernel first: if nft refuses, the old table (rolled back) and the old policy stay.
                self.firewall.apply(policy)
        except PolicyError as err:
            refused = err
        except FirewallError as err:
            refused = PolicyError([(None, "firewall", err.message)])
        if refused is not None:
            self.metrics.policy_reloads.labels("refused").inc()
            self.recent.error("policy_refused", refused.lines()[0])
            log.error("policy_refused", problems=refused.lines())
            self._event("policy_refused", {"problems": refused.lines()})
            return {"result": "refused", "problems": refused.lines()}
        if policy is not None:
            self.gate.swap(policy)
        self.metrics.policy_reloads.labels("applied").inc()
        return {"result": "applied", "version": policy.version if policy else None}

    async def _resolve(self, msgid: str, action: str, reason: str) -> dict[str, Any]:
        assert self.relay is not None
        row = await self.relay.resolve(msgid, action, reason)
        if self.checks is not None:
            await self.checks.refresh_outbox()
        return {"msgid": row.msgid, "infno": row.infno, "state": row.state.value, "outcome": row.outcome}

    def _event(self, kind: str, detail: dict[str, Any]) -> None:
        if self.mqtt is not None:
            self.mqtt.event(kind, **detail)

    def _start_recon(self, cfg: Config) -> None:
        assert self.relay is not None and cfg.session is not None
        r = cfg.recon
        extra = tuple(GroupKey(g.insutype, g.clr_type, g.setl_optins) for g in r.extra_groups)
        self.recon = Reconciler(
            self.outbox,
            self.relay,
            session_operator(cfg.session),
            cfg.recon_dir,
            ReconSettings(detail=r.detail, timeout=r.timeout, extra_groups=extra),
            on_finished=self._recon_finished,
            msgids=self.msgids,
        )
        self.recon_schedule = schedule = ReconSchedule(
            self.recon,
            cfg.recon_dir,
            cutoff=r.cutoff,
            lag_days=r.lag_days,
            retry_interval=r.retry_interval,
            max_attempts=r.max_attempts,
        )
        self._tasks.append(asyncio.create_task(schedule.run_forever(), name="recon"))

    def _recon_finished(self, report: Report) -> None:
        summary = report.summary()
        self.metrics.recon_runs.labels(report.status).inc()
        self.metrics.recon_differences.set(len(report.differences))
        self.metrics.recon_last_run.set_to_current_time()
        if self.mqtt is not None:
            # counts only: the difference list names patients and stays in the report files
            self.mqtt.event(
                "recon_finished",
                date=report.date,
                status=report.status,
                differences=summary["differences"],
                settlements=summary["settlements"],
                unresolved=summary["unresolved"],
            )

    async def _reconcile(self, day: str) -> dict[str, Any]:
        if self.recon is None:
            raise RequestError("reconciliation is not enabled (recon.enabled in the config)", http_status=409)
        try:
            parsed = date.fromisoformat(day)
        except ValueError:
            raise RequestError(f"not a date: {day!r} (YYYY-MM-DD)") from None
        try:
            report = await self.recon_schedule.run_now(parsed)
        except NotYet as exc:
            raise RequestError(str(exc), http_status=409) from None
        json_path, csv_path = report_paths(self.config.recon_dir, parsed)
        return report.summary() | {"report": str(json_path), "differences_csv": str(csv_path)}

    def _relay_event(self, kind: str, detail: dict[str, Any]) -> None:
        self.metrics.relay_events.labels(kind).inc()
        if self.mqtt is not None:
            self.mqtt.event(kind, **detail)

    def _upstream_switched(self, old: str, new: str) -> None:
        self.metrics.failovers.labels(old, new).inc()
        if self.mqtt is not None:
            self.mqtt.event("upstream_switched", was=old, to=new)

    def _pool_snapshot(self) -> list[dict[str, object]]:
        if self.pool is None:
            return [{} for _ in self.config.upstreams]
        by_name = {s["name"]: s for s in self.pool.snapshot()}
        return [by_name[u.name] for u in self.config.upstreams]

    def health_document(self) -> dict[str, Any]:
        doc = self.status()
        if self.host is not None:
            doc["host"] = self.host.sample().as_dict()
        return doc

    async def stop(self, grace: float = 10.0) -> None:
        deadline = time.monotonic() + grace
        self.notifier.stopping()
        if self.mqtt is not None:
            await self.mqtt.stop()
        if self.link is not None:
            await self.link.stop()
        for srv, path in self._listeners:
            await close_listener(srv, path)
        self._listeners = []
        if self.http is not None:
            drained = await self.http.drain(deadline)
            log.info("stopped", drained=drained, in_flight_left=self.http.in_flight)
        if self.api is not None:
            self.api.access.close()
        if self.relay is not None:
            await self.relay.stop(grace=max(0.5, deadline - time.monotonic()))
        if self.outbox is not None:
            await self.outbox.stop()
        if self.audit is not None:
            await self.audit.close()
        if self.connections is not None:
            await self.connections.close()
        await end_tasks(self._tasks, max(1.0, deadline - time.monotonic()))
        self._tasks = []

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

    def reload(self) -> list[str]:
        """Re-read the configuration file. A bad file changes nothing. What can change live changes now;
        returns the fields whose change needs a restart (they keep their running values until then)."""
        if self.config_path is None:
            return []
        self.notifier.notify(f"RELOADING=1\nMONOTONIC_USEC={time.monotonic_ns() // 1000}")
        try:
            new: Config | None = load_config(self.config_path)
            refused = None
        except ConfigError as err:
            new, refused = None, err
        if refused is not None or new is None:
            assert refused is not None
            self.metrics.reloads.labels("refused").inc()
            self.recent.error("reload_refused", refused.lines()[0])
            log.error("reload_refused", problems=refused.lines(), file=str(self.config_path))
            if self.mqtt is not None:
                self.mqtt.event("reload_refused", problems=refused.lines())
            # The policy files are separate: a good policy edit is not held back by a bad config edit.
            pol = self.reload_policy()
            self.notifier.notify(
                "READY=1\nSTATUS=reload refused: the running configuration stays in force"
                + ("; policy refused" if pol["result"] == "refused" else "")
            )
            return []
        old = self.config
        needs_restart = [name for name in RESTART_FIELDS if field_of(old, name) != field_of(new, name)]
        # Live: HIS-facing limits, paths and deadlines (new connections), and the log level.
        if self.http is not None:
            self.http.limits = http_limits(new)
        if self.api is not None:
            self.api.configure(
                new.api.paths,
                new.api.default_timeout,
                new.api.max_timeout,
                completion_values(new),
                signs_in=new.session is not None and new.session.sign_in,
            )
        if self.api is not None and new.logging.access != old.logging.access:
            previous, self.api.access = self.api.access, self._access_log(new)
            previous.close()
        if new.logging != old.logging:
            from gateway.logging import configure

            configure(new.logging.level, new.logging.format)
        kept = {name: field_of(old, name) for name in needs_restart}
        self.config = with_fields(new, kept)
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

    def _access_log(self, cfg: Config) -> AccessLog:
        a = cfg.logging.access
        return AccessLog(
            a.to,
            path=a.path,
            max_bytes=a.max_bytes,
            backups=a.backups,
            syslog_socket=a.syslog_socket,
            on_drop=self.metrics.access_log_dropped.inc,
        )

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        loop.add_signal_handler(signal.SIGHUP, self.request_reload)

    async def run(self) -> None:
        """Start, serve until SIGTERM/SIGINT, then stop gracefully."""
        # Before start: the API socket listens early in start(), and a SIGTERM from then on (systemd stopping a
        # unit that is still starting) must mean a clean stop, not death by the default handler.
        self.install_signal_handlers()
        await self.start()
        try:
            await self.wait_for_signal()
        finally:
            await self.stop()


def completion_values(cfg: Config) -> dict[str, str]:
    """What envelopes are completed with for clients that ask: the sign-in operator's identity (session:)."""
    s = cfg.session
    if s is None:
        return {}
    return {
        "fixmedins_code": s.fixmedins_code,
        "fixmedins_name": s.fixmedins_name,
        "mdtrtarea_admvs": s.mdtrtarea_admvs,
        "recer_sys_code": s.recer_sys_code,
        "infver": "V1.0",
        "opter": s.opter,
        "opter_name": s.opter_name,
        "opter_type": s.opter_type,
    }


def _outcome(row: Row) -> Outcome:
    return Outcome(
        row.msgid,
        row.infno,
        row.state.value,
        row.outcome,
        row.upstream,
        row.body_digest,
        row.response,
        row.updated,
        row.client,
    )
