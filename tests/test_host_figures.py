"""Host figures under a sandbox that hides /proc files: the gateway keeps running and says which are missing.

A unit with ProcSubset=pid (and some containers) hide /proc/stat and /proc/meminfo. The packaged unit once had
it, and the daemon refused to start ("not starting: /proc/stat: No such file or directory"), found by booting
the package under systemd (packaging/test-nspawn). Here a real procfs mounted with subset=pid, in a mount
namespace of the test's own (root), hides the same files from a real HostSampler and the metrics collector."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.root

PROBE = """
import json, sys
from pathlib import Path
from prometheus_client import CollectorRegistry, generate_latest
from gateway.health.host import HostSampler
from gateway.health.metrics import _HostCollector
sampler = HostSampler(Path(sys.argv[1]))
registry = CollectorRegistry()
registry.register(_HostCollector(sampler))
text = generate_latest(registry).decode()
names = sorted({line.split()[0] for line in text.splitlines() if line and not line.startswith("#")})
print(json.dumps({"missing": sampler.sample().missing(), "metrics": names}))
"""


def _run(tmp_path: Path, subset_pid: bool) -> dict[str, list[str]]:
    mount = "mount -t proc -o subset=pid proc /proc && " if subset_pid else ""
    script = f'{mount}exec "$0" -c "$1" "$2"'
    out = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", script, sys.executable, PROBE, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    result: dict[str, list[str]] = json.loads(out.stdout.splitlines()[-1])
    return result


def test_hidden_proc_files_leave_those_figures_out(tmp_path: Path) -> None:
    got = _run(tmp_path, subset_pid=True)
    assert got["missing"] == ["cpu_percent", "mem_available_bytes", "mem_percent"]
    assert "ybgate_host_cpu_percent" not in got["metrics"]
    assert "ybgate_host_mem_percent" not in got["metrics"]
    # what the process can still see is still reported
    for name in ("ybgate_host_process_rss_bytes", "ybgate_host_state_disk_free_bytes", "ybgate_host_load1"):
        assert name in got["metrics"]


def test_nothing_missing_with_the_whole_proc(tmp_path: Path) -> None:
    got = _run(tmp_path, subset_pid=False)
    assert got["missing"] == []
    assert "ybgate_host_cpu_percent" in got["metrics"]
