"""The Debian package builds, installs with the network cut, passes `ybgate check` as installed, and purges (#23).

It installs a package on this host (and leaves the ybgate system user, as Debian's purge does), so it runs in CI
and where YBGATE_PACKAGE_TEST=1 asks for it. Cost: 68 s here with a warm pip cache (build 50 s, install, check
and purge 15 s); a cold build downloads the wheels first.
The steps are packaging/build-deb and packaging/test-deb, which an operator can run by hand the same way.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
WANTED = any(os.environ.get(v, "").lower() in ("1", "true", "yes") for v in ("CI", "YBGATE_PACKAGE_TEST"))


@pytest.mark.skipif(not WANTED, reason="changes the host (installs a package): CI or YBGATE_PACKAGE_TEST=1")
def test_deb_builds_installs_offline_checks_and_purges() -> None:
    assert os.geteuid() == 0, "dpkg -i needs root"
    assert shutil.which("dh_virtualenv"), "apt-get install debhelper dh-virtualenv python3-dev (.ci/run does)"
    build = subprocess.run([REPO / "packaging/build-deb"], capture_output=True, text=True, timeout=1200, check=False)
    assert build.returncode == 0, build.stdout + build.stderr
    version = build.stdout.split()[0].split("_")[1]
    assert any((REPO / "dist").glob(f"ybgate-{version}-wheelhouse-*.tar.gz"))
    test = subprocess.run([REPO / "packaging/test-deb"], capture_output=True, text=True, timeout=600, check=False)
    assert test.returncode == 0, test.stdout + test.stderr
    assert "configuration ok" in test.stdout and "710 ybgate:ybgate-his /run/ybgate" in test.stdout
    assert test.stdout.rstrip().endswith("package ok: installed offline, checked, purged")
