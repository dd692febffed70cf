"""The shipped alert rules and dashboard (monitoring/) against the metrics the gateway really exports.

promtool (Debian's prometheus package, installed by .ci/run) checks the rules and runs their unit tests, in which
every alert fires from synthetic series; the checks here keep the rules and the dashboard from naming a metric
the gateway does not export, and every alert from going without a firing case.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.health.host import HostSampler
from gateway.health.lastexit import LastExit
from gateway.health.metrics import AuditFigures, Metrics

MONITORING = Path(__file__).parent.parent / "monitoring"
RULES = MONITORING / "alerts.yml"
RULE_TESTS = MONITORING / "alerts.test.yml"
DASHBOARD = MONITORING / "grafana-ybgate.json"
METRIC_NAME = re.compile(r"\bybgate_[a-z0-9_]+\b")


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool not found: install Debian's prometheus package (.ci/run does)")
    return path


@pytest.mark.parametrize("verb", ["check", "test"])
def test_promtool_accepts_the_rules_and_their_tests(verb: str) -> None:
    target = RULES if verb == "check" else RULE_TESTS
    done = subprocess.run(
        [promtool(), verb, "rules", target.name],
        cwd=MONITORING,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_promtool_test_fails_on_a_wrong_expectation(tmp_path: Path) -> None:
    """The rule tests can fail: one expected annotation changed is reported as a failure."""
    shutil.copy(RULES, tmp_path / RULES.name)
    text = RULE_TESTS.read_text(encoding="utf-8")
    assert "expires in 20 days" in text
    (tmp_path / RULE_TESTS.name).write_text(text.replace("expires in 20 days", "expires in 21 days"), encoding="utf-8")
    done = subprocess.run(
        [promtool(), "test", "rules", RULE_TESTS.name],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert "YbgateCertExpiring30d" in done.stdout + done.stderr


@dataclass
class _Figures:
    counts: dict[str, int] = field(default_factory=lambda: {"in_doubt": 1})
    oldest_unfinished: float | None = None
    oldest_in_doubt: float | None = None


class _Pool:
    def snapshot(self) -> list[dict[str, object]]:
        return [{"name": "primary", "role": "primary", "active": True, "breaker": "closed"}]


def exported_names(tmp_path: Path) -> set[str]:
    """Every series name a running gateway can export, from the registry the daemon builds."""
    metrics = Metrics("test")
    metrics.add_outbox(_Figures)
    metrics.add_host(HostSampler(tmp_path))
    metrics.add_pool(_Pool())
    metrics.add_outbox_writes(lambda: 0)
    metrics.add_audit(lambda: AuditFigures(chain_ok=True, checked_at=1.0, write_failures=0))
    metrics.add_previous_exit(LastExit("watchdog", "killed", "ABRT"))
    suffixes = {
        "counter": ("_total",),
        "histogram": ("_bucket", "_sum", "_count"),
        "info": ("_info",),
        "gauge": ("",),
        "unknown": ("",),
    }
    names: set[str] = set()
    for family in metrics.registry.collect():
        names.update(family.name + s for s in suffixes[family.type])
    return names


def rule_expressions() -> dict[str, str]:
    doc = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return {rule["alert"]: rule["expr"] for group in doc["groups"] for rule in group["rules"]}


def dashboard_expressions() -> list[str]:
    doc = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return [t["expr"] for p in doc["panels"] for t in p.get("targets", [])]


def test_rules_and_dashboard_name_only_exported_metrics(tmp_path: Path) -> None:
    exported = exported_names(tmp_path)
    assert "ybgate_breaker_state" in exported and "ybgate_requests_total" in exported
    used = {
        name: where
        for where, exprs in (("alerts.yml", rule_expressions().values()), (DASHBOARD.name, dashboard_expressions()))
        for expr in exprs
        for name in METRIC_NAME.findall(expr)
    }
    unknown = {name: where for name, where in used.items() if name not in exported}
    assert not unknown, f"metrics named but not exported: {unknown}"


def test_every_alert_has_a_firing_case() -> None:
    doc: dict[str, Any] = yaml.safe_load(RULE_TESTS.read_text(encoding="utf-8"))
    fired = {case["alertname"] for test in doc["tests"] for case in test["alert_rule_test"] if case["exp_alerts"]}
    missing = set(rule_expressions()) - fired
    assert not missing, f"alerts without a firing test in {RULE_TESTS.name}: {sorted(missing)}"


def test_dashboard_is_importable() -> None:
    doc = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    ids = [p["id"] for p in doc["panels"]]
    assert len(ids) == len(set(ids))
    assert {v["name"] for v in doc["templating"]["list"]} == {"datasource", "instance"}
    for panel in doc["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["targets"], panel["title"]
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]


async def test_event_loop_lag_is_measured_by_the_health_loop() -> None:
    """A loop blocked for 0.3 s makes the next health tick late by at least that much (the stall the watchdog
    would kill the daemon for, seen first on /metrics)."""
    import asyncio
    import time

    from gateway.health.checks import HealthChecks

    metrics = Metrics("test")
    ticked = asyncio.Event()

    async def summary() -> Any:
        ticked.set()  # called right after the lag is recorded
        return _Figures()

    checks = HealthChecks(metrics, summary, None, lambda _kind, _data: None)
    task = asyncio.create_task(checks.run(0.05, 3600.0))
    await asyncio.sleep(0)  # the loop task starts its first timer
    time.sleep(0.3)  # noqa: ASYNC251 - blocks the event loop, as a stuck synchronous call would
    await asyncio.wait_for(ticked.wait(), 10)
    task.cancel()
    assert (metrics.registry.get_sample_value("ybgate_event_loop_lag_seconds") or 0.0) >= 0.2
