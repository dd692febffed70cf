"""A real non-root member of the HIS group reaches the API socket laid out as the shipped units lay it out (#23).

The directory gets the mode, owner and group of systemd/ybgate.tmpfiles.conf, the socket those of
systemd/ybgate.socket; the test creates a throwaway service user, HIS group, HIS member and outsider (as root)
and connects as each with setpriv. systemd itself is not run here (tests/test_package.py boots it).
"""

from __future__ import annotations

import configparser
import grp
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
UNITS = REPO / "systemd"

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(
        shutil.which("useradd") is None or shutil.which("setpriv") is None,
        reason="needs useradd and setpriv to create and act as throwaway users",
    ),
]


def _section(unit: str, section: str) -> configparser.SectionProxy:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string((UNITS / unit).read_text())
    return parser[section]


def _socket_section() -> configparser.SectionProxy:
    return _section("ybgate.socket", "Socket")


def _runtime_dir_line() -> list[str]:
    for line in (UNITS / "ybgate.tmpfiles.conf").read_text().splitlines():
        fields = line.split()
        if fields[:2] == ["d", "/run/ybgate"]:
            return fields
    raise AssertionError("ybgate.tmpfiles.conf does not create /run/ybgate")


def _run(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True, timeout=30)


@pytest.fixture
def accounts() -> Iterator[dict[str, str]]:
    tag = f"{os.getpid() % 100000}"
    names = {
        "ybgate": f"ybgt{tag}",
        "ybgate-his": f"ybgt{tag}-his",
        "member": f"ybgt{tag}-m",
        "outsider": f"ybgt{tag}-o",
    }
    made_users: list[str] = []
    made_groups: list[str] = []
    try:
        _run("groupadd", "--system", names["ybgate-his"])
        made_groups.append(names["ybgate-his"])
        for who in ("ybgate", "outsider"):
            _run("useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", names[who])
            made_users.append(names[who])
        member = names["member"]
        _run(
            "useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "-G", names["ybgate-his"], member
        )
        made_users.append(member)
        yield names
    finally:
        for user in made_users:
            subprocess.run(["userdel", user], check=False, capture_output=True, timeout=30)
            subprocess.run(["groupdel", user], check=False, capture_output=True, timeout=30)
        for group in made_groups:
            subprocess.run(["groupdel", group], check=False, capture_output=True, timeout=30)


def _connect_as(user: str, path: Path) -> subprocess.CompletedProcess[str]:
    probe = (
        "import socket, sys\n"
        "s = socket.socket(socket.AF_UNIX)\n"
        "try:\n    s.connect(sys.argv[1])\nexcept OSError as e:\n    print(e.strerror); sys.exit(1)\n"
    )
    return subprocess.run(
        ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", "/usr/bin/python3", "-c", probe, str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_his_group_member_reaches_the_socket_and_others_do_not(accounts: dict[str, str]) -> None:
    base = Path(tempfile.mkdtemp(prefix="ybgate-his-", dir="/tmp"))
    try:
        base.chmod(0o755)  # stands for /run: every user may traverse it
        _, _, mode, owner, group, _ = _runtime_dir_line()
        run_dir = base / "ybgate"
        run_dir.mkdir()
        run_dir.chmod(int(mode, 8))
        os.chown(run_dir, pwd.getpwnam(accounts[owner]).pw_uid, grp.getgrnam(accounts[group]).gr_gid)

        unit = _socket_section()
        assert unit["ListenStream"] == "/run/ybgate/api.sock"
        listener = socket.socket(socket.AF_UNIX)
        path = run_dir / "api.sock"
        listener.bind(str(path))
        listener.listen(8)
        path.chmod(int(unit["SocketMode"], 8))
        os.chown(
            path, pwd.getpwnam(accounts[unit["SocketUser"]]).pw_uid, grp.getgrnam(accounts[unit["SocketGroup"]]).gr_gid
        )
        try:
            member = _connect_as(accounts["member"], path)
            assert member.returncode == 0, member.stdout + member.stderr
            outsider = _connect_as(accounts["outsider"], path)
            assert outsider.returncode == 1 and "Permission denied" in outsider.stdout
        finally:
            listener.close()
    finally:
        shutil.rmtree(base)


def test_the_service_does_not_re_own_the_socket_directory() -> None:
    """RuntimeDirectory= chowns the directory and what is in it to User:Group at each start; the units leave
    /run/ybgate to tmpfiles.d, and the service's ProtectSystem=strict gets write access to it explicitly."""
    service = _section("ybgate.service", "Service")
    assert "RuntimeDirectory" not in service and service["ReadWritePaths"] == "/run/ybgate"
    assert _socket_section()["SocketGroup"] == "ybgate-his"
    sysusers = (UNITS / "ybgate.sysusers.conf").read_text().split()
    assert "ybgate-his" in sysusers
