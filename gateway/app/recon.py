"""Daily reconciliation as a part: the reconciler, its schedule (a background loop), its figures and event, and
the run an operator asks for through the control socket."""

from __future__ import annotations

from datetime import date
from typing import Any

from gateway.app.assembly import session_operator
from gateway.app.parts import Common, TaskPart
from gateway.config import Config
from gateway.errors import RequestError
from gateway.platform.msgids import MsgidMaker
from gateway.platform.stmtfiles import GroupKey
from gateway.recon.report import Report
from gateway.recon.report import paths as report_paths
from gateway.recon.run import Reconciler, ReconSettings
from gateway.recon.schedule import NotYet, ReconSchedule
from gateway.relay.durable import DurableRelay
from gateway.relay.outbox import SqliteOutbox
from gateway.relay.pg_outbox import PgOutbox


class ReconPart:
    name = "recon"

    def __init__(
        self,
        cfg: Config,
        common: Common,
        *,
        outbox: SqliteOutbox | PgOutbox,
        relay: DurableRelay,
        msgids: MsgidMaker,
    ) -> None:
        assert cfg.session is not None
        self.cfg, self.metrics, self.events = cfg, common.metrics, common.events
        r = cfg.recon
        extra = tuple(GroupKey(g.insutype, g.clr_type, g.setl_optins) for g in r.extra_groups)
        self.reconciler = Reconciler(
            outbox,
            relay,
            session_operator(cfg.session),
            cfg.recon_dir,
            ReconSettings(detail=r.detail, timeout=r.timeout, extra_groups=extra),
            on_finished=self._finished,
            msgids=msgids,
        )
        self.schedule = ReconSchedule(
            self.reconciler,
            cfg.recon_dir,
            cutoff=r.cutoff,
            lag_days=r.lag_days,
            retry_interval=r.retry_interval,
            max_attempts=r.max_attempts,
            alone=outbox.alone,
        )
        self._loop = TaskPart("recon", self.schedule.run_forever, common.deadline)

    async def start(self) -> None:
        await self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()

    def _finished(self, report: Report) -> None:
        summary = report.summary()
        self.metrics.recon_runs.labels(report.status).inc()
        self.metrics.recon_differences.set(len(report.differences))
        self.metrics.recon_last_run.set_to_current_time()
        # counts only: the difference list names patients and stays in the report files
        self.events.emit(
            "recon_finished",
            {
                "date": report.date,
                "status": report.status,
                "differences": summary["differences"],
                "settlements": summary["settlements"],
                "unresolved": summary["unresolved"],
            },
        )

    async def reconcile(self, day: str) -> dict[str, Any]:
        try:
            parsed = date.fromisoformat(day)
        except ValueError:
            raise RequestError(f"not a date: {day!r} (YYYY-MM-DD)") from None
        try:
            report = await self.schedule.run_now(parsed)
        except NotYet as exc:
            raise RequestError(str(exc), http_status=409) from None
        json_path, csv_path = report_paths(self.cfg.recon_dir, parsed)
        return report.summary() | {"report": str(json_path), "differences_csv": str(csv_path)}
