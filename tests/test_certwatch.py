"""Certificate expiry warnings: once per threshold crossed (30, 7, 1 days, expired), afresh after renewal,
and end to end through a running daemon whose own certificate expires in five days."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from gateway.app.daemon import Daemon
from gateway.app.demo import demo_config, sim_tlcp_config
from gateway.crypto.testpki import generate_test_pki
from gateway.health.certwatch import CertFigure, ExpiryWatch, threshold_reached
from gateway.http1.unix_client import request
from gateway.sim.server import Simulator

NOW = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)


def figure(days: float, label: str = "sign") -> CertFigure:
    return CertFigure(label, "CN=ybgate", NOW + dt.timedelta(days=days))


def test_thresholds() -> None:
    assert threshold_reached(31) is None
    assert threshold_reached(30) == 30 and threshold_reached(8) == 30
    assert threshold_reached(7) == 7 and threshold_reached(1.5) == 7
    assert threshold_reached(0.5) == 1
    assert threshold_reached(0) == 0 and threshold_reached(-3) == 0


def test_each_threshold_warns_once_as_the_date_approaches() -> None:
    watch = ExpiryWatch()
    cert = figure(40)
    seen = []
    for day in range(0, 45):
        now = NOW + dt.timedelta(days=day)
        seen += [(day, w.threshold) for w in watch.check([cert], now)]
    # 40 days left at day 0: warnings when 30, 7, 1 and 0 days remain, each exactly once.
    assert seen == [(10, 30), (33, 7), (39, 1), (40, 0)]
    expired = watch.check([cert], NOW + dt.timedelta(days=50))
    assert expired == []


def test_a_first_look_at_a_close_certificate_warns_at_its_level_and_renewal_starts_afresh() -> None:
    watch = ExpiryWatch()
    [w] = watch.check([figure(5)], NOW)
    assert w.threshold == 7 and "in 5.0 days" in w.message and "under 7" in w.message
    assert watch.check([figure(5)], NOW) == []
    renewed = figure(400)
    assert watch.check([renewed], NOW) == []
    [w] = watch.check([renewed], NOW + dt.timedelta(days=371))
    assert w.threshold == 30


async def test_daemon_reports_days_left_and_warns_about_its_own_certificate(short_tmp: Path) -> None:
    pki = generate_test_pki(short_tmp / "pki", client_days=5)["ca"].parent
    sim = Simulator()
    await sim.start(tlcp=sim_tlcp_config(pki))
    assert sim.addresses is not None
    config = demo_config(short_tmp / "gw", sim.addresses.platform, pki=pki)
    config = config.model_copy(update={"admin": config.admin.model_copy(update={"enabled": True, "port": 0})})
    daemon = Daemon(config)
    events: list[tuple[str, dict[str, object]]] = []
    daemon.events.subscribe(lambda e: events.append((e.kind, e.detail)))
    await daemon.start()
    try:
        assert daemon.admin_address is not None
        host, port = daemon.admin_address
        metrics = (await request("GET", "/metrics", host=host, port=port)).body.decode()
        days = [line for line in metrics.splitlines() if line.startswith("ybgate_cert_days_left{")]
        assert any('cert="sign"' in line and float(line.rsplit(" ", 1)[1]) < 5.01 for line in days), days
        assert any('cert="ca:' in line and float(line.rsplit(" ", 1)[1]) > 3000 for line in days), days
        assert 'ybgate_cert_expiry_warnings_total{threshold="7"} 2.0' in metrics  # sign and enc
        warned = sorted(d["cert"] for kind, d in events if kind == "cert_expiring")
        assert warned == ["enc", "sign"]
        assert all(d["threshold_days"] == 7 for kind, d in events if kind == "cert_expiring")
        status = json.loads((await request("GET", "/status", host=host, port=port)).body)
        assert {c["cert"] for c in status["certs"]} >= {"sign", "enc"}
        assert status["outbox"]["counts"] == {} and status["outbox"]["in_doubt"] == []
    finally:
        await daemon.stop(1)
        await sim.stop()
