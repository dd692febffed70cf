"""The access log (#24): one line per HIS request with the documented ten fields, no patient data, to a rotated
file or the journal's syslog socket, and never a wait on the event loop when that target is slow.

Real gateway, real simulator, real files; the journal is a Unix datagram socket the test binds (no journald runs
here), read as journald would read it."""

from __future__ import annotations

import asyncio
import json
import random
import socket
import time
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import pytest
import pytest_asyncio

from gateway.api.accesslog import BATCH_LINES, FLUSH_AFTER, AccessEntry, AccessLog, local_stamp
from gateway.app.daemon import Daemon
from gateway.app.demo import demo_config
from gateway.config import AccessLogging
from gateway.sim.server import Simulator

from conftest import Gateway, example, fresh


@pytest_asyncio.fixture
async def logged(sim: Simulator, short_tmp: Path) -> AsyncIterator[tuple[Gateway, Path]]:
    assert sim.addresses is not None
    path = short_tmp / "access.log"
    config = demo_config(short_tmp, sim.addresses.platform)
    logging = config.logging.model_copy(update={"access": AccessLogging(to="file", path=path)})
    config = config.model_copy(update={"logging": logging})
    daemon = Daemon(config)
    await daemon.start()
    try:
        yield Gateway(daemon, config, sim), path
    finally:
        await daemon.stop(grace=1.0)


def _lines(path: Path) -> list[list[str]]:
    return [line.split(" ") for line in path.read_text(encoding="utf-8").splitlines()]


async def test_answered_and_refused_requests_each_leave_one_line(logged: tuple[Gateway, Path]) -> None:
    gw, path = logged
    sign_no = await gw.sign_in()
    query = fresh("1101_query_request.json", sign_no=sign_no)
    assert (await gw.post(query)).status == 200
    bad = fresh("1101_query_request.json", sign_no=sign_no)
    del bad["infno"]
    refused = await gw.post(bad)
    await gw.daemon.stop(grace=1.0)  # closing writes what is queued

    lines = _lines(path)
    assert all(len(fields) == 10 for fields in lines), lines
    (answered,) = [f for f in lines if f[4] == query["msgid"]]
    _, client, peer, infno, _, status, infcode, error, upstream, ms = answered
    assert (client, infno, status, infcode, error, upstream) == ("demo-user", "1101", "200", "0", "-", "sim")
    assert peer.startswith("uid=") and float(ms) >= 0
    # an envelope that does not decode has no infno or msgid to show; its caller and kind it has
    (failed,) = [f for f in lines if f[7] == "bad_envelope"]
    assert failed[1] == "demo-user" and failed[5] == str(refused.status) and failed[6] == "-"
    assert len([f for f in lines if f[3] == "9001"]) == 1
    # nothing from inside the envelopes: names, certificate numbers
    text = path.read_text(encoding="utf-8")
    person = example("1101_query_request.json")["input"]["data"]
    for value in (person["psn_name"], person["certno"]):
        assert value not in text


async def test_the_journal_target_speaks_syslog_with_its_own_identifier(short_tmp: Path) -> None:
    where = str(short_tmp / "dev-log")
    journal = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    journal.bind(where)
    journal.settimeout(10)
    access = AccessLog("journal", syslog_socket=where)
    try:
        access.record(AccessEntry("his", "10.20.30.4:5000", "2207", "M" * 30, 200, 0, None, "primary", 12.25))
        datagram = (await asyncio.to_thread(journal.recv, 4096)).decode()
    finally:
        access.close()
        journal.close()
    # <30>: facility daemon (3) × 8 + severity info (6); `journalctl -t ybgate-access` selects by the identifier
    assert datagram.startswith("<30>ybgate-access: ")
    fields = datagram.removeprefix("<30>ybgate-access: ").rstrip("\x00").split(" ")
    assert fields[1:] == ["his", "10.20.30.4:5000", "2207", "M" * 30, "200", "0", "-", "primary", "12.2"]


def test_without_a_journal_the_lines_go_to_stderr(short_tmp: Path, capfd: pytest.CaptureFixture[str]) -> None:
    access = AccessLog("journal", syslog_socket=str(short_tmp / "nothing-here"))
    access.record(AccessEntry(None, "unknown", None, None, 400, -1, "bad_http", None, 0.0))
    access.close()
    err = capfd.readouterr().err
    assert err.startswith("ybgate-access: ") and err.rstrip().endswith("400 -1 bad_http - 0.0")


def test_the_file_rotates_by_size(short_tmp: Path) -> None:
    path = short_tmp / "access.log"
    access = AccessLog("file", path=path, max_bytes=2000, backups=2)
    for i in range(200):
        access.record(AccessEntry("his", "uid=1", "1101", f"{i:030d}", 200, 0, None, "p", 1.0))
    access.close()
    assert path.exists() and (short_tmp / "access.log.1").exists() and (short_tmp / "access.log.2").exists()
    assert not (short_tmp / "access.log.3").exists()
    assert all(p.stat().st_size <= 2000 for p in short_tmp.glob("access.log*"))


def test_a_target_that_cannot_keep_up_drops_and_counts_instead_of_blocking(short_tmp: Path) -> None:
    # a journal that never reads: its socket buffer fills, the writer thread blocks, the queue fills
    where = str(short_tmp / "dev-log")
    stuck = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    stuck.bind(where)
    drops: list[int] = []
    access = AccessLog("journal", syslog_socket=where, on_drop=lambda: drops.append(1), queue_lines=10)
    try:
        for i in range(5000):
            access.record(AccessEntry("his", "uid=1", "1101", f"{i:030d}", 200, 0, None, "p", 1.0))
        assert access.dropped > 0 and len(drops) == access.dropped
    finally:
        stuck.close()  # the writer's send fails now; close() returns
        access.close()


def test_a_field_is_always_one_token() -> None:
    line = AccessEntry("a b", "x\ny", "1101", "", 200, None, "k", None, 1.0).line()
    assert len(line.split(" ")) == 10 and "\n" not in line
    assert json.dumps(line)  # printable


@pytest.mark.parametrize("zone", ["Asia/Shanghai", "America/St_Johns", "Europe/Berlin"])
def test_the_time_field_is_what_datetime_would_write(zone: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # the stamp is worked out once a second and the milliseconds appended: the same text as
    # datetime.now().astimezone().isoformat(timespec="milliseconds") in every zone, around DST changes and at
    # fractions that round up to the next millisecond
    monkeypatch.setenv("TZ", zone)
    time.tzset()
    try:
        rng = random.Random(7)
        times = [rng.uniform(0, 2e9) for _ in range(20_000)] + [
            rng.randrange(0, 2 * 10**12) / 1000 for _ in range(20_000)
        ]
        times += [1711846799.9995, 1711846800.0, 1730000000.9999996, time.time()]  # Berlin's 2024 spring change
        for t in times:
            assert local_stamp(t) == datetime.fromtimestamp(t).astimezone().isoformat(timespec="milliseconds"), t
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


async def test_on_the_event_loop_entries_travel_in_batches_and_none_is_lost(short_tmp: Path) -> None:
    path = short_tmp / "access.log"
    access = AccessLog("file", path=path)
    count = BATCH_LINES + 10
    try:
        for i in range(count):
            access.record(AccessEntry("his", "uid=1", "1101", f"{i:030d}", 200, 0, None, "p", 1.0))
        # a full batch went at once; the rest waits for FLUSH_AFTER, then is written in order
        for _ in range(200):
            lines = path.read_text().splitlines() if path.exists() else []
            if len(lines) == count:
                break
            await asyncio.sleep(FLUSH_AFTER / 2)
        assert [line.split(" ")[4] for line in lines] == [f"{i:030d}" for i in range(count)]
        access.record(AccessEntry("his", "uid=1", "1101", "last", 200, 0, None, "p", 1.0))
    finally:
        access.close()  # writes what waits on the loop too
    assert path.read_text().splitlines()[-1].split(" ")[4] == "last"
