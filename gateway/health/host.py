"""Host figures from psutil: the 前置机 usually has nobody watching it, so the gateway reports for it."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil


@dataclass(frozen=True)
class HostFigures:
    cpu_percent: float  # whole host, since the previous sample
    load1: float
    mem_available_bytes: int
    mem_percent: float
    process_rss_bytes: int
    process_cpu_percent: float
    process_open_fds: int
    state_disk_free_bytes: int
    state_disk_percent: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class HostSampler:
    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.process = psutil.Process(os.getpid())
        # psutil's cpu_percent measures since the previous call: prime both so the first sample is meaningful.
        psutil.cpu_percent(None)
        self.process.cpu_percent(None)

    def sample(self) -> HostFigures:
        mem = psutil.virtual_memory()
        disk = psutil.disk_usage(str(self.state_dir))
        with self.process.oneshot():
            rss = self.process.memory_info().rss
            pcpu = self.process.cpu_percent(None)
            fds = self.process.num_fds()
        return HostFigures(
            cpu_percent=psutil.cpu_percent(None),
            load1=os.getloadavg()[0],
            mem_available_bytes=mem.available,
            mem_percent=mem.percent,
            process_rss_bytes=rss,
            process_cpu_percent=pcpu,
            process_open_fds=fds,
            state_disk_free_bytes=disk.free,
            state_disk_percent=disk.percent,
        )
