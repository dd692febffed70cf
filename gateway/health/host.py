"""Host figures from psutil: the 前置机 usually has nobody watching it, so the gateway reports for it.

Each figure is read on its own. A figure whose source the sandbox hides (a unit with ProcSubset=pid hides
/proc/stat and /proc/meminfo; a container may hide others) is reported missing, logged once and left out of the
metrics: host figures are a convenience, and never a reason for the gateway not to relay.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, TypeVar

import psutil
import structlog

log = structlog.get_logger("gateway.health")

T = TypeVar("T")


@dataclass(frozen=True)
class HostFigures:
    cpu_percent: float | None  # whole host, since the previous sample
    load1: float | None
    mem_available_bytes: int | None
    mem_percent: float | None
    process_rss_bytes: int | None
    process_cpu_percent: float | None
    process_open_fds: int | None
    state_disk_free_bytes: int | None
    state_disk_percent: float | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def missing(self) -> list[str]:
        return [f.name for f in fields(self) if getattr(self, f.name) is None]


def _read(source: Callable[[], T]) -> T | None:
    try:
        return source()
    except (OSError, psutil.Error):
        return None


class HostSampler:
    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.process = psutil.Process(os.getpid())
        # psutil's cpu_percent measures since the previous call: prime both so the first sample is meaningful.
        _read(lambda: psutil.cpu_percent(None))
        _read(lambda: self.process.cpu_percent(None))
        missing = self.sample().missing()
        if missing:
            log.warning(
                "host_figures_unavailable", figures=missing, hint="the unit or container hides their /proc files"
            )

    def sample(self) -> HostFigures:
        mem = _read(psutil.virtual_memory)
        disk = _read(lambda: psutil.disk_usage(str(self.state_dir)))
        return HostFigures(
            cpu_percent=_read(lambda: psutil.cpu_percent(None)),
            load1=_read(lambda: os.getloadavg()[0]),
            mem_available_bytes=None if mem is None else mem.available,
            mem_percent=None if mem is None else mem.percent,
            process_rss_bytes=_read(lambda: self.process.memory_info().rss),
            process_cpu_percent=_read(lambda: self.process.cpu_percent(None)),
            process_open_fds=_read(self.process.num_fds),
            state_disk_free_bytes=None if disk is None else disk.free,
            state_disk_percent=None if disk is None else disk.percent,
        )
