"""The outbox and the audit log as one part: the audit hears every final outcome the outbox commits, so the outbox
stops (its last commits heard) before the audit log closes; and the hourly prune of finished rows.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import structlog

from gateway.app.parts import Deadline, TaskPart
from gateway.audit.anchor import AnchorFile, AnchorSink
from gateway.audit.log import AuditLog, Outcome
from gateway.audit.tailcheck import TailCheck
from gateway.config import Config
from gateway.crypto import Certificate, sm3
from gateway.health.metrics import AuditFigures, Metrics
from gateway.health.mqtt import HealthPublisher
from gateway.identity import LoadedIdentity, load_identity
from gateway.platform.msgids import MsgidMaker
from gateway.relay.backends import outbox_for
from gateway.relay.outbox import Row, SqliteOutbox
from gateway.relay.pg_lease import SLOTS
from gateway.relay.pg_outbox import PgOutbox
from gateway.relay.repository import OutboxUnavailable

log = structlog.get_logger("gateway.daemon")

#: seconds between the running gateway's checks of what it appended to its audit chain
AUDIT_CHECK_EVERY = 60.0


class Storage:
    name = "storage"

    def __init__(self, cfg: Config, mqtt: HealthPublisher | None) -> None:
        self.cfg = cfg
        # Where each checkpoint's hash goes as it is made, outside the audit directory: the anchor file, and
        # retained on MQTT when it is on (a later subscriber still gets the latest).
        self.anchors: list[AnchorSink] = []
        if cfg.audit.anchor_file is not None:
            self.anchors.append(AnchorFile(cfg.audit.anchor_file).publish)
        if mqtt is not None:
            self.anchors.append(lambda anchor: mqtt.retain("audit/anchor", anchor.doc()))
        self.outbox: SqliteOutbox | PgOutbox = outbox_for(
            cfg.relay.outbox.backend,
            state_dir=cfg.state_dir,
            dsn_file=cfg.relay.outbox.dsn_file,
            synchronous=cfg.relay.outbox_synchronous,
            digest=sm3,
            node=cfg.relay.outbox.node,
            lease=cfg.relay.outbox.lease,
        )
        self.audit: AuditLog | None = None
        self.audit_check: TailCheck | None = None

    async def start(self) -> None:
        await self.outbox.start()
        try:
            await self._start_audit()
        except BaseException:
            await self.outbox.stop()
            raise

    async def _start_audit(self) -> None:
        """Open the chain (cutting a torn tail), append what the outbox finished after its last entry (a crash
        between the two commits), then hear every final outcome from the outbox as it commits."""
        cfg = self.cfg
        if not cfg.audit.enabled:
            return
        signer = subject = None
        chain: tuple[Certificate, ...] = ()
        if cfg.identity is not None:
            creds = load_identity(cfg.identity).credentials
            signer, subject, chain = creds.sign_key, creds.sign_cert.subject, (creds.sign_cert, *creds.chain)
        a = cfg.audit
        audit = self.audit = AuditLog(
            cfg.audit_dir,
            rotate_bytes=a.rotate_bytes,
            checkpoint_every=a.checkpoint_every,
            checkpoint_interval=a.checkpoint_interval,
            signer=signer,
            signer_subject=subject,
            signer_chain=chain,
            anchors=self.anchors,
        )
        audit.open()
        audited = audit.recent_keys()
        missing = [
            r
            for r in await self.outbox.finished_since(audit.catch_up_since())
            if (r.msgid, r.state.value) not in audited
        ]
        if missing:
            log.warning("audit_catch_up", entries=len(missing))
            audit.record(_outcome(r) for r in missing)
        self.outbox.on_final = lambda rows: audit.record(_outcome(r) for r in rows)
        self.audit_check = TailCheck(cfg.audit_dir)

    def minter(self) -> MsgidMaker:
        """One minter for every message the gateway sends itself, its position kept across restarts; on a shared
        database, in the msgid slice this gateway's lease holds, and in the one it moves to."""
        high_water = self.cfg.state_dir / "msgid.seq"
        outbox = self.outbox
        if not isinstance(outbox, PgOutbox):
            return MsgidMaker(high_water=high_water)
        lease = outbox.lease
        assert lease.slot is not None  # taken when the outbox started
        minter = MsgidMaker(high_water=high_water, node=lease.slot, nodes=SLOTS)
        lease.on_slot = lambda slot: minter.use_slice(slot, SLOTS)
        return minter

    def prepare_identity(self, ident: LoadedIdentity) -> Callable[[], None]:
        """Certificate rotation: the audit log records the hand-over and signs with the new key from then on."""
        audit, creds = self.audit, ident.credentials

        def switch() -> None:
            if audit is not None:
                audit.rotate_signer(creds.sign_key, (creds.sign_cert, *creds.chain))

        return switch

    def configure(self, cfg: Config) -> None:
        """What a reload may change here (the audit fields marked LIVE)."""
        if self.audit is not None:
            a = cfg.audit
            self.audit.configure(a.rotate_bytes, a.checkpoint_every, a.checkpoint_interval)

    async def stop(self) -> None:
        await self.outbox.stop()
        if self.audit is not None:
            await self.audit.close()

    def export(self, metrics: Metrics) -> None:
        metrics.add_outbox_writes(lambda: self.outbox.write_failures)
        metrics.add_audit(self.audit_figures)

    def housekeeping(self, retention_days: Callable[[], int], deadline: Deadline) -> list[TaskPart]:
        """The background loops of this part: the hourly prune and, with an audit log, its chain's self-check."""
        tasks = [TaskPart("outbox-prune", lambda: self.prune_forever(retention_days), deadline)]
        if self.audit is not None:
            tasks.append(TaskPart("audit-check", self.check_audit_forever, deadline))
        return tasks

    def audit_figures(self) -> AuditFigures | None:
        if self.audit is None or self.audit_check is None:
            return None
        check = self.audit_check
        return AuditFigures(check.ok, check.checked_at, self.audit.write_failures)

    async def check_audit(self) -> bool:
        """One round of the audit chain's self-check (TailCheck); logs a break the round it is found."""
        check = self.audit_check
        if check is None:
            return True
        was_ok = check.ok
        ok = await asyncio.to_thread(check.run)
        if was_ok and not ok:
            log.error("audit_chain_broken", problem=check.problem, hint="ybgate audit verify says where and what")
        return ok

    async def check_audit_forever(self) -> None:
        while True:
            await self.check_audit()
            await asyncio.sleep(AUDIT_CHECK_EVERY)

    async def prune_forever(self, retention_days: Callable[[], int]) -> None:
        """Drop finished rows past retention, hourly, in small batches (the writer never stalls for long)."""
        while True:
            days = retention_days()
            removed = 0
            try:
                async with self.outbox.alone("prune") as mine:  # one gateway of a pair at a time
                    if mine:
                        removed = await self.outbox.prune(time.time() - days * 86400)
            except OutboxUnavailable as exc:  # the database is away: the next hour's turn
                log.warning("outbox_prune_deferred", error=exc.message)
            if removed:
                log.info("outbox_pruned", rows=removed, retention_days=days)
            await asyncio.sleep(3600)


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
        tuple(row.completed.split(",")) if row.completed else (),
    )
