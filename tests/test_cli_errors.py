"""Ops commands answer broken input with one line and a non-zero exit, never a traceback (#24)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def ybgate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args], capture_output=True, text=True, timeout=120, check=False
    )


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_gen_test_pki_keeps_an_existing_pki_without_force(tmp_path: Path) -> None:
    pki = tmp_path / "pki"
    assert ybgate("certs", "gen-test-pki", str(pki)).returncode == 0
    before = {p.name: p.read_bytes() for p in pki.iterdir()}
    line = one_line_error(ybgate("certs", "gen-test-pki", str(pki)))
    assert str(pki) in line and "ca.crt.pem" in line and "--force" in line
    assert {p.name: p.read_bytes() for p in pki.iterdir()} == before  # nothing replaced
    forced = ybgate("certs", "gen-test-pki", str(pki), "--force")
    assert forced.returncode == 0, forced.stderr
    assert (pki / "ca.crt.pem").read_bytes() != before["ca.crt.pem"]


def test_gen_test_pki_into_a_bad_directory_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory\n")
    for target in (blocker, blocker / "pki"):
        line = one_line_error(ybgate("certs", "gen-test-pki", str(target)))
        assert line.startswith("ybgate certs gen-test-pki: cannot write to") and str(target) in line


def test_outbox_commands_on_a_file_that_is_not_an_outbox(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "outbox.db").write_bytes(b"this is not an SQLite database, it is garbage\n" * 100)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        f"development: true\nstate_dir: {state}\nupstreams: [{{name: s, host: 127.0.0.1, port: 1, transport: tcp}}]\n"
    )
    for args in (("list",), ("show", "H" * 30)):
        line = one_line_error(ybgate("outbox", *args, "--config", str(cfg)))
        assert line.startswith("ybgate outbox:") and "outbox.db" in line and "not a database" in line
