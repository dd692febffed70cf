"""How the previous run ended, as the unit's ExecStopPost wrote it (systemd/ybgate.service): read at the next
start, logged when it was not a clean stop, and exported for the YbgateWatchdogMissed alert. systemd itself is not
PID 1 here: the file is written as that ExecStopPost line writes it (the unit's line is checked below; the booted
run is packaging/test-nspawn's)."""

from __future__ import annotations

from pathlib import Path

from gateway.app.daemon import Daemon
from gateway.app.demo import demo_config
from gateway.health.lastexit import LastExit, read_last_exit
from gateway.sim.server import Simulator

UNIT = Path(__file__).resolve().parent.parent / "systemd" / "ybgate.service"


def test_the_unit_tells_the_next_run_how_this_one_ended() -> None:
    lines = [ln for ln in UNIT.read_text().splitlines() if ln.startswith("ExecStopPost=")]
    assert lines == [
        'ExecStopPost=-/bin/sh -c \'echo "$$SERVICE_RESULT $$EXIT_CODE $$EXIT_STATUS" > "$$STATE_DIRECTORY/last-exit"\''
    ]


def test_the_file_as_systemd_leaves_it(tmp_path: Path) -> None:
    assert read_last_exit(tmp_path) is None  # never stopped under systemd here
    (tmp_path / "last-exit").write_text("watchdog killed ABRT\n")
    assert read_last_exit(tmp_path) == LastExit("watchdog", "killed", "ABRT")
    (tmp_path / "last-exit").write_text("nonsense-result " + "x" * 100 + "\n")
    odd = read_last_exit(tmp_path)
    assert odd is not None and odd.result == "unknown" and odd.code == "x" * 32 and odd.status == ""


async def test_a_watchdog_kill_is_exported_by_the_next_run(sim: Simulator, short_tmp: Path) -> None:
    assert sim.addresses is not None
    config = demo_config(short_tmp, sim.addresses.platform, level="warning")
    config.state_dir.mkdir(parents=True, exist_ok=True)
    (config.state_dir / "last-exit").write_text("watchdog killed ABRT\n")
    daemon = Daemon(config)
    await daemon.start()
    try:
        labels = {"result": "watchdog", "code": "killed", "status": "ABRT"}
        assert daemon.metrics.registry.get_sample_value("ybgate_previous_exit", labels) == 1
    finally:
        await daemon.stop(grace=1.0)
