"""Suite-wide rules and fixtures.

Under CI a skipped test is a failure, not a footnote. The fixtures start a real simulator and a real gateway on a
Unix socket.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import shutil
import socket
import struct
import sys
import tempfile
import termios
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import pytest_asyncio
from hypothesis import settings

from gateway.app.daemon import Daemon
from gateway.app.demo import demo_config
from gateway.config import Config
from gateway.http1.client import ClientResponse
from gateway.http1.unix_client import request
from gateway.sim.server import Simulator

T = TypeVar("T")

#: a real PostgreSQL for the outbox's second backend (tests/pg_fixtures.py)
pytest_plugins = ["pg_fixtures"]

# -- hypothesis profiles -------------------------------------------------------------------------------
#
# ci (the default): each property test runs the example count it declares with fuzz_examples(), from a seed
# derived from the test itself and without the example database, so a CI failure replays identically anywhere.
# deep (YBGATE_HYPOTHESIS=deep): 10⁵ random examples per property test, saved to the local database so a
# failure found overnight replays on the next run. Loaded here because @settings decorators read the profile
# when test modules are imported, which is after this file.
HYPOTHESIS_PROFILE = os.environ.get("YBGATE_HYPOTHESIS", "ci")
settings.register_profile("ci", deadline=None, derandomize=True, database=None, print_blob=True)
settings.register_profile("deep", max_examples=100_000, deadline=None, print_blob=True)
settings.load_profile(HYPOTHESIS_PROFILE)


def fuzz_examples(ci: int) -> int:
    """A property test's example count: `ci` (what the CI run affords for it) under the ci profile, the profile's
    own count under any other, so that an explicit @settings(max_examples=...) never caps a deep run."""
    return ci if HYPOTHESIS_PROFILE == "ci" else settings.default.max_examples


#: why a `root`-marked test is skipped for a developer who is not root (CI runs as root, and fails on any skip)
NEEDS_ROOT = "needs root (network namespaces, nftables, throwaway users): run as root, as CI does"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if os.geteuid() == 0:
        return
    for item in items:
        if item.get_closest_marker("root") is not None:
            item.add_marker(pytest.mark.skip(reason=NEEDS_ROOT))


_skipped: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped:
        _skipped.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if os.environ.get("CI", "").lower() in ("1", "true", "yes") and _skipped:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if os.environ.get("CI", "").lower() in ("1", "true", "yes") and _skipped:
        terminalreporter.write_line(
            f"CI: {len(_skipped)} test(s) skipped; every test must run in CI:", red=True, bold=True
        )
        for nodeid in _skipped:
            terminalreporter.write_line(f"  {nodeid}", red=True)


# -- shared fixtures: a real simulator and a real gateway on a Unix socket --------------------------------

DATA = Path(__file__).parent / "data"
PLATFORM_PATH = "/fsi/api/rsfComIfsService/callService"


def example(name: str) -> dict[str, Any]:
    return json.loads((DATA / "platform" / name).read_text(encoding="utf-8"))


@pytest_asyncio.fixture
async def sim() -> AsyncIterator[Simulator]:
    s = Simulator()
    await s.start()
    yield s
    await s.stop()


class Gateway:
    def __init__(self, daemon: Daemon, config: Config, sim: Simulator) -> None:
        self.daemon = daemon
        self.config = config
        self.sim = sim

    @property
    def socket(self) -> str:
        return str(self.config.api_socket)

    async def post(
        self, body: bytes | dict[str, Any], *, path: str = PLATFORM_PATH, headers: list[tuple[str, str]] | None = None
    ) -> ClientResponse:
        raw = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode()
        return await request("POST", path, raw, unix_socket=self.socket, headers=headers)

    async def sign_in(self) -> str:
        reply = await self.post(example("9001_signin_request.json"))
        return json.loads(reply.body)["output"]["signinoutb"]["sign_no"]


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A short directory: Unix socket paths must fit in 108 bytes, pytest's tmp_path may not."""
    path = Path(tempfile.mkdtemp(prefix="ybg-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest_asyncio.fixture
async def gateway(sim: Simulator, short_tmp: Path) -> AsyncIterator[Gateway]:
    assert sim.addresses is not None
    config = demo_config(short_tmp, sim.addresses.platform, level="warning")
    daemon = Daemon(config)
    await daemon.start()
    yield Gateway(daemon, config, sim)
    await daemon.stop(grace=1.0)


async def until(condition: Callable[[], bool | Awaitable[bool]], within: float = 30.0) -> None:
    """Wait until `condition` (a function, sync or async) holds, polled every 10 ms: tests wait for what they
    need to have happened, not for a time they hope is long enough. `within` seconds is a guard against a hang,
    never a measurement."""
    async with asyncio.timeout(within):
        while True:
            held = condition()
            if held if isinstance(held, bool) else await held:
                return
            await asyncio.sleep(0.01)


class LoopClock:
    """The running event loop's clock, stopped: it moves only when the test advances it. A timer the code under
    test set (asyncio.timeout, call_later, a keep-alive or header timeout) then fires exactly when the test has moved
    the clock past it, never because the machine was slow, and never before. Nothing that waits on a loop timer ends
    by itself meanwhile, so waits are guarded in real time (a thread) by within()."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.now = loop.time()

    def advance(self, seconds: float) -> None:
        self.now += seconds

    async def within(self, awaitable: Awaitable[T], seconds: float = 30.0) -> T:
        """Await it; fail if that takes `seconds` of real time."""
        task = asyncio.ensure_future(awaitable)
        guard = threading.Timer(seconds, self.loop.call_soon_threadsafe, (task.cancel,))
        guard.start()
        try:
            return await task
        except asyncio.CancelledError:
            raise AssertionError(f"not done within {seconds} s of real time") from None
        finally:
            guard.cancel()

    async def until_read(self, sock: socket.socket) -> None:
        """Until the peer has read all that was sent on `sock` and its reader has run on it. The loop turns without
        a timer (none would fire): the kernel's count of unread bytes is polled once per turn."""
        while struct.unpack("i", fcntl.ioctl(sock, termios.TIOCOUTQ, bytes(4)))[0]:  # noqa: ASYNC110 - no event for it
            await asyncio.sleep(0)
        await asyncio.sleep(0)  # the reader woken by those bytes was queued before this task: it has run now


@pytest_asyncio.fixture
async def loop_clock() -> AsyncIterator[LoopClock]:
    """The loop's clock stopped for the test (see LoopClock). Request it after the fixtures that start the code
    under test: it is given back before they stop, so their shutdown runs on real time."""
    loop = asyncio.get_running_loop()
    clock = LoopClock(loop)
    loop.time = lambda: clock.now  # type: ignore[method-assign]
    try:
        yield clock
    finally:
        del loop.time  # type: ignore[method-assign]


_msgid_seq = iter(range(1, 10**9))


def fresh_msgid(code: str = "H44030000001") -> str:
    """A new 30-character msgid (code + time + sequence), as a HIS makes one per message."""
    from datetime import datetime

    return f"{code}{datetime.now():%Y%m%d%H%M%S}{next(_msgid_seq) % 10000:04d}"


def fresh(name: str, **fields: Any) -> dict[str, Any]:
    """An example envelope with a new msgid (the gateway answers a repeated msgid from its outbox)."""
    return example(name) | {"msgid": fresh_msgid()} | fields


async def ybgate_process(*args: str, **kwargs: Any) -> asyncio.subprocess.Process:
    """The ybgate CLI as a real process (`python -m gateway ...`); output discarded unless asked for."""
    kwargs.setdefault("stdout", asyncio.subprocess.DEVNULL)
    kwargs.setdefault("stderr", asyncio.subprocess.DEVNULL)
    return await asyncio.create_subprocess_exec(sys.executable, "-m", "gateway", *args, **kwargs)


async def ybgate_output(*args: str) -> tuple[int, str, str]:
    """Run one ybgate command to completion: (exit code, stdout, stderr)."""
    proc = await ybgate_process(*args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    return proc.returncode or 0, out.decode(), err.decode()


def gateway_operator() -> Any:
    """The operator the gateway signs in as in tests of its own requests (sign-in, reconciliation)."""
    from gateway.config import SessionSettings

    return SessionSettings(
        sign_in=True,
        opter="0099",
        opter_name="ybgate",
        fixmedins_code="H44030000001",
        fixmedins_name="示例市第一人民医院",
        mdtrtarea_admvs="440300",
        mac="52-54-00-00-00-99",
        ip="10.0.0.99",
    )


@pytest_asyncio.fixture
async def signing(sim: Simulator, short_tmp: Path) -> AsyncIterator[Gateway]:
    """A gateway that signs in on the HIS's behalf (session: with sign_in), as gateway_operator()."""
    assert sim.addresses is not None
    config = demo_config(short_tmp, sim.addresses.platform).model_copy(update={"session": gateway_operator()})
    daemon = Daemon(config)
    await daemon.start()
    yield Gateway(daemon, config, sim)
    await daemon.stop(1)


def audit_outcome(i: int) -> Any:
    """The i-th of a run of answered 2207 outcomes, as the outbox hands them to the audit log."""
    from gateway.audit.log import Outcome

    return Outcome(
        msgid=f"H44030000001{20261124080000 + i:014d}{i:04d}",
        infno="2207",
        state="answered",
        outcome="answered",
        upstream="primary",
        request_sm3=bytes(32),
        response=b'{"infcode": 0}',
        finished=1_700_000_000.0 + i,
        client="his",
    )
