"""systemd integration with real processes: READY after the socket listens, watchdog pings, STOPPING on SIGTERM,
socket activation across a restart under load, and the unit files' own checks."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gateway.health.systemd import Notifier, listen_fds
from gateway.http1.unix_client import request
from gateway.sim.server import Simulator

from conftest import PLATFORM_PATH, example, fresh, until, ybgate_output, ybgate_process

REPO = Path(__file__).resolve().parent.parent


def write_config(dirpath: Path, sim: Simulator) -> Path:
    assert sim.addresses is not None
    host, port = sim.addresses.platform
    cfg = dirpath / "ybgate.yaml"
    cfg.write_text(
        f"development: true\nstate_dir: {dirpath}/state\nruntime_dir: {dirpath}/run\n"
        f"api: {{socket: {dirpath}/run/api.sock}}\nadmin: {{port: 0}}\n"
        f"upstreams: [{{name: sim, host: {host}, port: {port}, transport: tcp}}]\nlogging: {{level: info}}\n"
    )
    return cfg


class NotifySocket:
    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.setblocking(False)
        self.path = path

    async def next(self, within: float = 10.0) -> str:
        loop = asyncio.get_running_loop()
        data = await asyncio.wait_for(loop.sock_recv(self.sock, 4096), within)
        return data.decode()

    async def until(self, prefix: str, within: float = 10.0) -> str:
        deadline = time.monotonic() + within
        while True:
            msg = await self.next(max(0.01, deadline - time.monotonic()))
            if msg.startswith(prefix):
                return msg


def test_notifier_does_nothing_outside_systemd() -> None:
    n = Notifier({})
    assert not n.enabled and n.watchdog_interval is None
    assert n.ready("x") is False


def test_notifier_abstract_namespace_and_watchdog_env() -> None:
    name = f"ybgate-test-{os.getpid()}"
    recv = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    recv.bind("\0" + name)
    try:
        n = Notifier({"NOTIFY_SOCKET": "@" + name, "WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid())})
        assert n.watchdog_interval == 2.0
        assert n.status("serving")
        assert recv.recv(100) == b"STATUS=serving"
    finally:
        recv.close()
    other = Notifier({"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "1"})
    assert other.watchdog_interval is None  # meant for another process


def test_listen_fds_ignores_other_pids() -> None:
    assert listen_fds({"LISTEN_PID": "1", "LISTEN_FDS": "1"}, unset=False) == {}


async def test_ready_watchdog_stopping(sim: Simulator, short_tmp: Path) -> None:
    cfg = write_config(short_tmp, sim)
    notify = NotifySocket(short_tmp / "notify.sock")
    env = os.environ | {"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "300000"}
    # WATCHDOG_PID must name the daemon itself: exec keeps the shell's pid.
    proc = await asyncio.create_subprocess_exec(
        "sh",
        "-c",
        'export WATCHDOG_PID=$$; exec "$0" -m gateway run --config "$1"',
        sys.executable,
        str(cfg),
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        ready = await notify.until("READY=1")
        assert f"MAINPID={proc.pid}" in ready and "STATUS=serving" in ready
        # READY means the API answers now, not soon.
        health = await request("GET", "/healthz", unix_socket=str(short_tmp / "run/api.sock"))
        assert health.status == 200
        pings = [await notify.until("WATCHDOG=1", within=2) for _ in range(3)]
        assert len(pings) == 3
        proc.send_signal(signal.SIGTERM)
        assert await notify.until("STOPPING=1") == "STOPPING=1"
        assert await asyncio.wait_for(proc.wait(), 15) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def _start_activated(cfg: Path, listener: socket.socket, log: Path) -> asyncio.subprocess.Process:
    # What systemd does before exec: the socket at fd 3, LISTEN_PID naming the process that will run.
    fd = listener.fileno()
    launcher = (
        "import os, sys; fd = int(sys.argv[1]); os.dup2(fd, 3); os.close(fd); "
        "os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS='1', LISTEN_FDNAMES='api'); "
        "os.execv(sys.executable, [sys.executable, '-m', 'gateway', 'run', '--config', sys.argv[2]])"
    )
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        launcher,
        str(fd),
        str(cfg),
        pass_fds=(fd,),
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


async def test_socket_activation_restart_refuses_no_request(sim: Simulator, short_tmp: Path) -> None:
    """The test holds the listening socket as systemd would; the daemon is stopped and started again while
    HIS clients keep sending. Every request must be answered: none refused, none dropped."""
    cfg = write_config(short_tmp, sim)
    (short_tmp / "run").mkdir()
    sock_path = str(short_tmp / "run/api.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(sock_path)
    listener.listen(1024)
    log = short_tmp / "daemon.log"
    first = await _start_activated(cfg, listener, log)
    results: list[int | str] = []
    stop = asyncio.Event()

    async def client() -> None:
        while not stop.is_set():
            try:
                reply = await request(
                    "POST",
                    PLATFORM_PATH,
                    json.dumps(fresh("9001_signin_request.json")).encode(),
                    unix_socket=sock_path,
                    time_limit=20,
                )
                results.append(reply.status)
            except (OSError, TimeoutError) as exc:
                results.append(type(exc).__name__)
            await asyncio.sleep(0.005)

    async def served(more_than: int) -> None:
        # Waits on progress, not on a fixed sleep: a loaded machine starts the daemon slower, and requests
        # sent meanwhile wait in the listener's backlog rather than fail.
        async with asyncio.timeout(30):
            while len(results) <= more_than:  # noqa: ASYNC110 - results grow from 4 client tasks; polling is simplest
                await asyncio.sleep(0.05)

    try:
        clients = [asyncio.create_task(client()) for _ in range(4)]
        await served(10)
        before = len(results)
        first.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(first.wait(), 15) == 0
        second = await _start_activated(cfg, listener, log)
        await served(before + 10)
        stop.set()
        await asyncio.gather(*clients)
    finally:
        for p in (first, locals().get("second")):
            if p is not None and p.returncode is None:
                p.send_signal(signal.SIGTERM)
                await asyncio.wait_for(p.wait(), 15)
        listener.close()
    failures = [r for r in results if r != 200]
    assert not failures, (failures[:5], log.read_text()[-2000:])
    assert sum(1 for m in sim.ledger.messages if m.infno == "9001") == len(results)


@pytest.fixture
def units(tmp_path: Path) -> Path:
    """The unit files with ExecStart pointing at this environment's ybgate (verify checks it exists)."""
    exe = shutil.which("ybgate") or str(Path(sys.executable).parent / "ybgate")
    assert Path(exe).exists(), "ybgate must be installed in the test environment"
    for name in ("ybgate.service", "ybgate.socket"):
        text = (REPO / "systemd" / name).read_text().replace("/opt/ybgate/bin/ybgate", exe)
        (tmp_path / name).write_text(text)
    return tmp_path


def test_systemd_analyze_verify_prints_nothing(units: Path) -> None:
    result = subprocess.run(
        ["systemd-analyze", "verify", str(units / "ybgate.socket"), str(units / "ybgate.service")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0
    assert result.stdout == "" and result.stderr == ""


def test_systemd_analyze_security_exposure(units: Path) -> None:
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", str(units / "ybgate.service")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    line = next(ln for ln in result.stdout.splitlines() if "Overall exposure level" in ln)
    exposure = float(line.split(":")[1].split()[0])
    assert exposure <= 2.0, line


async def test_cli_status_talks_to_the_running_daemon(sim: Simulator, short_tmp: Path) -> None:
    cfg = write_config(short_tmp, sim)
    text = cfg.read_text().replace("admin: {port: 0}", "admin: {port: 19181}")
    cfg.write_text(text)
    code, _, err = await ybgate_output("status", "--config", str(cfg))
    assert code == 1 and "not answering" in err
    proc = await ybgate_process("run", "--config", str(cfg))
    try:
        await until((short_tmp / "run/api.sock").exists)
        await request(
            "POST",
            PLATFORM_PATH,
            json.dumps(example("9001_signin_request.json")).encode(),
            unix_socket=str(short_tmp / "run/api.sock"),
        )
        signin = example("9001_signin_request.json")
        other = json.dumps(signin | {"opter_name": "someone else"}).encode()
        for _ in range(2):  # the HIS retries a different request under a msgid already used
            await request("POST", PLATFORM_PATH, other, unix_socket=str(short_tmp / "run/api.sock"))
        code, text, _ = await ybgate_output("status", "--config", str(cfg))
        assert code == 0
        assert "answered 1  refused 2  failed 0" in text, text
        assert "  by kind: msgid_conflict 2" in text, text
        assert "upstream sim (primary, ACTIVE): tcp" in text and "link: not watched" in text
        [line] = [ln for ln in text.splitlines() if signin["msgid"] in ln]  # one line for the msgid, counted
        assert line.startswith("refused msgid_conflict: 9001 ") and "(x2)" in line, text
    finally:
        proc.send_signal(signal.SIGTERM)
        await proc.wait()


async def test_sigterm_as_soon_as_the_socket_listens_is_a_clean_stop(sim: Simulator, short_tmp: Path) -> None:
    """systemd may stop a unit that is still starting: from the moment the API socket accepts, SIGTERM must
    mean a drained, clean exit (status 0), not death by the default handler."""
    cfg = write_config(short_tmp, sim)
    sock = short_tmp / "run/api.sock"
    for _ in range(3):
        proc = await ybgate_process("run", "--config", str(cfg))
        async with asyncio.timeout(30):
            while True:
                try:
                    _, w = await asyncio.open_unix_connection(str(sock))
                except OSError:
                    await asyncio.sleep(0.005)
                    continue
                w.close()
                break
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0


def test_every_program_the_units_run_comes_with_the_package_or_its_dependencies() -> None:
    # ExecReload=/bin/kill failed with 203/EXEC on a minimal Debian booted under systemd (packaging/test-nspawn):
    # /bin/kill is procps's, which the package did not depend on.
    control = (REPO / "packaging/debian/control").read_text()
    depends = next(ln for ln in control.splitlines() if ln.startswith("Depends:"))
    declared = {d.strip().split()[0] for d in depends.removeprefix("Depends:").split(",")}
    for unit in sorted((REPO / "systemd").glob("ybgate*.service")):
        for line in unit.read_text().splitlines():
            if not line.startswith("Exec"):
                continue
            program = line.split("=", 1)[1].lstrip("-@:+!").split()[0]
            if program.startswith("/opt/ybgate/"):
                continue  # shipped in the package itself
            owner = subprocess.run(["dpkg", "-S", program], capture_output=True, text=True, timeout=30, check=False)
            assert owner.returncode == 0, f"{unit.name}: {program} belongs to no Debian package"
            # the package's own line, after any "diversion by …" lines
            package = next(ln for ln in owner.stdout.splitlines() if not ln.startswith("diversion")).split(":", 1)[0]
            if _essential(package):
                continue  # on every Debian system: Essential packages are never declared
            assert package in declared, f"{unit.name}: {program} is {package}'s, not in {depends!r}"


def _essential(package: str) -> bool:
    done = subprocess.run(
        ["dpkg-query", "-W", "-f=${Essential}", package], capture_output=True, text=True, timeout=30, check=False
    )
    return done.stdout.strip() == "yes"
