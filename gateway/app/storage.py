"""The outbox and the audit log as one part: the audit hears every final outcome the outbox commits, so the outbox
stops (its last commits heard) before the audit log closes; and the hourly prune of finished rows.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import structlog

from gateway.audit.anchor import AnchorFile, AnchorSink
from gateway.audit.log import AuditLog, Outcome
from gateway.config import Config
from gateway.crypto import Certificate, sm3
from gateway.health.mqtt import HealthPublisher
from gateway.identity import LoadedIdentity, load_identity
from gateway.relay.backends import outbox_for
from gateway.relay.outbox import Row, SqliteOutbox
from gateway.relay.pg_outbox import PgOutbox

log = structlog.get_logger("gateway.daemon")


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

    async def prune_forever(self, retention_days: Callable[[], int]) -> None:
        """Drop finished rows past retention, hourly, in small batches (the writer never stalls for long)."""
        while True:
            days = retention_days()
            removed = await self.outbox.prune(time.time() - days * 86400)
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
    )
