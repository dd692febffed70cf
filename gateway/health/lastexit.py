"""How the previous run of the service ended, as systemd told it: the unit's ExecStopPost writes $SERVICE_RESULT,
$EXIT_CODE and $EXIT_STATUS into the state directory (systemd/ybgate.service), and the next start reads them. A
watchdog kill cannot be seen from inside the process that was killed; this is how it is seen at all — the
metric ybgate_previous_exit{result="watchdog"} and the alert YbgateWatchdogMissed."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import structlog

log = structlog.get_logger("gateway.systemd")

FILE = "last-exit"
#: what systemd writes as SERVICE_RESULT (systemd.exec(5)); anything else is shown as "unknown"
RESULTS = frozenset(
    {"success", "protocol", "timeout", "exit-code", "signal", "core-dump", "watchdog", "start-limit-hit", "resources"}
)


@dataclass(frozen=True)
class LastExit:
    result: str  # SERVICE_RESULT
    code: str  # EXIT_CODE: exited, killed, dumped
    status: str  # EXIT_STATUS: an exit status or a signal name


def read_last_exit(state_dir: Path) -> LastExit | None:
    """The previous run's end, or None when the service never stopped under systemd here (or the file is not
    readable: the figure is then simply absent). A run that did not end cleanly is logged."""
    try:
        words = (state_dir / FILE).read_text(encoding="ascii", errors="replace").split()
    except OSError:
        return None
    if not words:
        return None
    result = words[0] if words[0] in RESULTS else "unknown"
    code, status = (w[:32] for w in (*words[1:3], "", "")[:2])  # label values: short, whatever the file holds
    last = LastExit(result, code, status)
    if result != "success":
        log.warning("previous_run_ended", result=last.result, code=last.code, status=last.status)
    return last
