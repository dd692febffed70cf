"""The suite's own rules: a `root` test skips, with its reason, for a developer who is not root; under CI that
skip fails the run.

The developer who is not root is played by the child interpreter with os.geteuid answering 1000: CI runs as root,
and a real unprivileged user may not be able to read a root-owned checkout.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
AS_USER_1000 = "import os, sys, pytest; os.geteuid = lambda: 1000; sys.exit(pytest.main(sys.argv[1:]))"


def _pytest_not_root(ci: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CI"} | ({"CI": ci} if ci else {})
    return subprocess.run(
        [sys.executable, "-c", AS_USER_1000, "-p", "no:cacheprovider", "-q", "-rs", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_root_test_skips_with_its_reason_for_a_developer_who_is_not_root() -> None:
    run = _pytest_not_root("", "tests/test_link.py")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "passed" not in run.stdout and "error" not in run.stdout.lower()
    skips = [line for line in run.stdout.splitlines() if line.startswith("SKIPPED")]
    assert skips and all("needs root" in line and "tests/test_link.py" in line for line in skips), run.stdout


def test_under_ci_that_skip_fails_the_run() -> None:
    run = _pytest_not_root("true", "tests/test_link.py")
    assert run.returncode == 1, run.stdout + run.stderr
    assert "test(s) skipped; every test must run in CI" in run.stdout
