"""Every refusal `ybgate run` makes for a bad file or setting, `ybgate check` makes first (#23).

Each case breaks one thing in a configuration that passes; `check` must name it and end with one verdict line,
`run` must refuse it in one line (no traceback) with exit 78, which the unit's RestartPreventExitStatus= keeps
from restarting every second. Real files, a real test PKI, the host's real groups and interfaces.
"""

from __future__ import annotations

import grp
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.crypto.testpki import generate_test_pki

EX_CONFIG = 78


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args], capture_output=True, text=True, timeout=60, check=False
    )


class Setup:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.pki = root / "pki"
        generate_test_pki(self.pki)
        self.config = root / "ybgate.yaml"
        self.settings: dict[str, str] = {
            "sign_cert": str(self.pki / "client_sign.crt.pem"),
            "sign_key": str(self.pki / "client_sign.key.pem"),
            "enc_cert": str(self.pki / "client_enc.crt.pem"),
            "enc_key": str(self.pki / "client_enc.key.pem"),
            "ca_bundle": str(self.pki / "ca.crt.pem"),
            "group": grp.getgrgid(os.getegid()).gr_name,
            "interface": "lo",
            "state": str(root / "state"),
        }
        self.write()

    def write(self) -> None:
        s = self.settings
        self.config.write_text(
            "development: true\n"
            f"state_dir: {s['state']}\n"
            f"runtime_dir: {self.root / 'run'}\n"
            f"api: {{socket_group: {s['group']}}}\n"
            f"health: {{interface: {s['interface']}}}\n"
            "upstreams:\n  - {name: sim, host: 127.0.0.1, port: 9443, transport: tcp}\n"
            "identity:\n"
            + "".join(f"  {k}: {s[k]}\n" for k in ("sign_cert", "sign_key", "enc_cert", "enc_key", "ca_bundle"))
        )


def _missing_ca(s: Setup) -> str:
    (s.pki / "ca.crt.pem").unlink()
    return str(s.pki / "ca.crt.pem")


def _garbage_ca(s: Setup) -> str:
    (s.pki / "ca.crt.pem").write_text("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n")
    return str(s.pki / "ca.crt.pem")


def _enc_as_sign(s: Setup) -> str:
    s.settings["sign_cert"], s.settings["sign_key"] = s.settings["enc_cert"], s.settings["enc_key"]
    s.write()
    return s.settings["enc_cert"]


def _open_key(s: Setup) -> str:
    (s.pki / "client_sign.key.pem").chmod(0o644)
    return str(s.pki / "client_sign.key.pem")


def _group_readable_key(s: Setup) -> str:
    (s.pki / "client_enc.key.pem").chmod(0o640)
    return str(s.pki / "client_enc.key.pem")


def _foreign_ca(s: Setup) -> str:
    other = s.root / "other"
    generate_test_pki(other)
    shutil.copy(other / "ca.crt.pem", s.pki / "ca.crt.pem")
    return "client_sign.crt.pem"


def _no_group(s: Setup) -> str:
    s.settings["group"] = "ybgate-no-such-group"
    s.write()
    return "api.socket_group: group 'ybgate-no-such-group' does not exist"


def _no_interface(s: Setup) -> str:
    s.settings["interface"] = "zz-missing0"
    s.write()
    return "health.interface: no network interface named 'zz-missing0'"


def _state_under_a_file(s: Setup) -> str:
    (s.root / "afile").write_text("")
    s.settings["state"] = str(s.root / "afile" / "state")
    s.write()
    return "state_dir:"


CASES: dict[str, Callable[[Setup], str]] = {
    "missing CA file": _missing_ca,
    "garbage CA": _garbage_ca,
    "enc certificate as the sign certificate": _enc_as_sign,
    "key mode 0644": _open_key,
    "key mode 0640": _group_readable_key,
    "chain to another CA": _foreign_ca,
    "socket_group missing": _no_group,
    "interface missing": _no_interface,
    "state_dir not creatable": _state_under_a_file,
}


@pytest.fixture
def setup(tmp_path: Path) -> Setup:
    s = Setup(tmp_path)
    result = _cli("check", "--config", str(s.config))
    assert result.returncode == 0, result.stderr
    assert result.stdout.rstrip().splitlines()[-1] == f"{s.config}: configuration ok"
    return s


@pytest.mark.parametrize("case", CASES)
def test_check_refuses_what_run_refuses(setup: Setup, case: str) -> None:
    named = CASES[case](setup)
    check = _cli("check", "--config", str(setup.config))
    assert check.returncode == 1, check.stdout
    assert named in check.stderr
    assert "configuration ok" not in check.stdout + check.stderr
    assert check.stderr.rstrip().splitlines()[-1].startswith(f"{setup.config}: configuration rejected")
    run = _cli("run", "--config", str(setup.config))
    assert run.returncode == EX_CONFIG, run.stderr
    assert "Traceback" not in run.stderr
    assert named in run.stderr
    assert run.stderr.rstrip().splitlines()[-1].startswith(f"ybgate: not starting: {setup.config}")


def test_run_refuses_a_bad_setting_in_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("development: true\nupstreams:\n  - {name: x, host: 127.0.0.1, port: eighty, transport: tcp}\n")
    run = _cli("run", "--config", str(bad))
    assert run.returncode == EX_CONFIG and "Traceback" not in run.stderr
    assert f"{bad}:3:" in run.stderr
    missing = _cli("run", "--config", str(tmp_path / "absent.yaml"))
    assert missing.returncode == EX_CONFIG and "Traceback" not in missing.stderr
    assert str(tmp_path / "absent.yaml") in missing.stderr
