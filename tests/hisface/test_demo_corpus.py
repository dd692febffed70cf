"""A corpus of HIS requests through `ybgate demo --tcp`, the process a HIS developer tries first (#21, "done when").

Every client family (tests/hisface/hisclients.py: the bytes JDK HttpURLConnection, Apache HttpClient, .NET
HttpWebRequest and HttpClient and the bureau's sample client put on the wire) sends the shapes real HIS code
sends: sign-in, person queries on each province's path family, loose field types, pre-settlement and
settlement, catalogued transactions across the catalogue, a file upload (JSON and multipart) and its download,
and envelopes the platform would refuse. The demo runs as its own process with its own simulator, as the README
shows it; the test reads its printed addresses.

For each request: the answer is one the sending stack reads (no status its code throws on), a .NET client's
`Expect: 100-continue` gets its interim answer before it sends the body, no catalogued infno is answered as an
unknown transaction, a download arrives as the file's bytes, and each settlement the platform accepted is in its
ledger exactly once."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest_asyncio
from hisclients import FAMILIES, Answer, Family, apache_multipart, call, dotnet_multipart

from gateway.http1.unix_client import request
from gateway.platform.catalogue import TxClass, national
from gateway.platform.stmtfiles import download_input, upload_input

from conftest import fresh

#: path families HIS code is written for, each with the infno it carries (None: the infno is in the envelope)
PATHS = (
    ("/fsi/api/rsfComIfsService/callService", None),
    ("/fsi/api/rsfComIfsService/callService/1101", "1101"),
    ("/power-csb/powercsb/1101", "1101"),  # Hunan
    ("/ebus/fsi/api/hsa/hgs/1101", "1101"),  # TIF-fronted
    ("/ebus/prod/poc/hsa/hgs/1101", "1101"),  # TIF, another middle
    ("/CSB/hsa-fsi-1101", "1101"),  # Jiangxi
)
#: queries across the catalogue: the simulator must know each (an answer about the input is fine; "交易编号不存在"
#: is not)
CATALOGUED = (
    *("1201", "1301", "1312", "1901", "2001", "5201", "5203"),
    *("5205", "5301", "5302", "3101", "5401", "4103", "1162"),
)
UNKNOWN_TX = re.compile(r"交易编号.*不存在")


@dataclass
class Demo:
    tcp: tuple[str, int]
    admin: tuple[str, int]
    proc: asyncio.subprocess.Process
    printed: str = ""
    sent: int = 0
    stalls: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)

    async def send(self, family: Family, body: bytes, path: str = "/fsi/api/rsfComIfsService/callService") -> Answer:
        # a long interim wait: a loaded machine must not pass for a stall; `continued` says if it came at all
        answer = await call(family, body, tcp=self.tcp, path=path, continue_wait=10.0)
        self.sent += 1
        if family.expect_continue and not answer.continued:
            self.stalls.append(f"{family.name} {path}")
        if not family.readable(answer.status):
            self.unreadable.append(f"{family.name} {path}: HTTP {answer.status}")
        return answer

    async def ledger(self) -> dict[str, Any]:
        reply = await request("GET", "/_sim/ledger", host=self.admin[0], port=self.admin[1])
        doc: dict[str, Any] = json.loads(reply.body)
        return doc


@pytest_asyncio.fixture
async def demo() -> AsyncIterator[Demo]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway",
        "demo",
        "--tcp",
        "127.0.0.1:0",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        env=os.environ | {"PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    printed = ""
    try:
        while "Ctrl-C" not in printed:
            line = await asyncio.wait_for(proc.stdout.readline(), 60)
            assert line, f"the demo ended before it was ready: {printed}"
            printed += line.decode()
        tcp = re.search(r"LAN HIS \(TCP.*\): http://([\d.]+):(\d+)/", printed)
        admin = re.search(r"simulator admin http://([\d.]+):(\d+)/_sim/", printed)
        assert tcp and admin, printed
        yield Demo((tcp[1], int(tcp[2])), (admin[1], int(admin[2])), proc, printed)
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGINT)
        try:
            await asyncio.wait_for(proc.wait(), 30)
        except TimeoutError:
            proc.kill()
            await proc.wait()


def raw(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, ensure_ascii=False).encode("utf-8")


def loose(doc: dict[str, Any]) -> bytes:
    """The HIS's looser shape: input as a JSON string, opter_type a number, inf_time with a T, nulls for
    optional fields."""
    shaped = doc | {
        "input": json.dumps(doc["input"], ensure_ascii=False),
        "opter_type": 1,
        "inf_time": str(doc["inf_time"]).replace(" ", "T"),
        "dev_no": None,
        "cainfo": None,
    }
    return raw(shaped)


def read(answer: Answer, family: Family) -> dict[str, Any]:
    doc = answer.sees(family)
    assert doc is not None, f"{family.name} cannot read HTTP {answer.status}"
    return doc


async def sign_in(demo: Demo, family: Family) -> str:
    doc = read(await demo.send(family, raw(fresh("9001_signin_request.json"))), family)
    assert str(doc["infcode"]) == "0", doc
    return str(doc["output"]["signinoutb"]["sign_no"])


async def test_the_corpus_through_the_demo(demo: Demo) -> None:
    catalogue = national()
    settlements: list[str] = []
    for family in FAMILIES:
        sign_no = await sign_in(demo, family)

        for path, _ in PATHS:  # every province path family
            doc = read(await demo.send(family, raw(fresh("1101_query_request.json", sign_no=sign_no)), path), family)
            assert str(doc["infcode"]) == "0", (family.name, path, doc)

        doc = read(await demo.send(family, loose(fresh("1101_query_request.json", sign_no=sign_no))), family)
        assert str(doc["infcode"]) == "0", (family.name, "loose", doc)

        visit = fresh("2207_settle_request.json", sign_no=sign_no)
        pre = visit | {"infno": "2206", "msgid": fresh("2207_settle_request.json")["msgid"]}
        doc = read(await demo.send(family, raw(pre)), family)
        assert str(doc["infcode"]) == "0", (family.name, "2206", doc)
        doc = read(await demo.send(family, raw(visit)), family)
        assert str(doc["infcode"]) == "0", (family.name, "2207", doc)
        settlements.append(str(visit["msgid"]))
        # the cashier's retry of the same bytes: the stored answer, nothing booked again
        assert read(await demo.send(family, raw(visit)), family) == doc

        for infno in (*CATALOGUED[FAMILIES.index(family) :: len(FAMILIES)], "5101"):
            assert catalogue.classify(infno).tx_class is TxClass.SAFE, infno
            query = fresh("1101_query_request.json", sign_no=sign_no, infno=infno)
            doc = read(await demo.send(family, raw(query)), family)
            assert not UNKNOWN_TX.search(str(doc.get("err_msg") or "")), (family.name, infno, doc)

        short = fresh("1101_query_request.json", sign_no=sign_no)
        short["msgid"] = str(short["msgid"])[:29]
        doc = read(await demo.send(family, raw(short)), family)
        assert doc["gateway_error"] == "bad_envelope" and str(doc["infcode"]) == "-1"

        content = f"对账明细 {family.name}\n".encode() + bytes(range(256))
        up = fresh("9001_signin_request.json", infno="9101", sign_no=sign_no)
        up["input"] = upload_input("明细.zip", content, "H44030000001")
        doc = read(await demo.send(family, raw(up), "/fsi/api/fileupload/upload"), family)
        assert str(doc["infcode"]) == "0", (family.name, "9101", doc.get("err_msg"))
        down = fresh("9001_signin_request.json", infno="9102", sign_no=sign_no)
        down["input"] = download_input(doc["output"]["file_qury_no"], "明细.zip", "H44030000001")
        got = await demo.send(family, raw(down), "/fsi/api/fileupload/download")
        assert got.status == 200 and got.headers.get("content-type") == "application/octet-stream"
        assert got.body == content  # what HIS code writes to disk

    java = FAMILIES[0]
    sign_no = await sign_in(demo, java)
    for build in (apache_multipart, dotnet_multipart):
        up = fresh("9001_signin_request.json", infno="9101", sign_no=sign_no)
        up["input"] = {"fsUploadIn": {"filename": "detail.zip", "fixmedins_code": "H44030000001"}}
        content = b"PK\x03\x04" + bytes(range(256))
        family, body = build("----ybgateBoundary7MA4YWxk", json.dumps(up, ensure_ascii=False), "detail.zip", content)
        doc = read(await demo.send(family, body, "/fsi/api/fileupload/upload"), family)
        assert str(doc["infcode"]) == "0", doc
        down = fresh("9001_signin_request.json", infno="9102", sign_no=sign_no)
        down["input"] = download_input(doc["output"]["file_qury_no"], "detail.zip", "H44030000001")
        assert (await demo.send(java, raw(down), "/fsi/api/fileupload/download")).body == content

    assert demo.sent == 94, demo.sent  # the count docs/his-integration.md gives
    assert demo.unreadable == [] and demo.stalls == []
    ledger = await demo.ledger()
    for msgid in settlements:
        assert [s["msgid"] for s in ledger["settlements"]].count(msgid) == 1, msgid


async def ybgate(*args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode()


async def test_the_demo_tour_works_as_printed(demo: Demo) -> None:
    """What the demo prints for a person to try (#24): its configuration, which the ops commands read to reach
    the running demo, the status page, and one sample request per kind of transaction, each answered as its
    line says; a sample posted twice gets the same answer and is booked once."""
    config = re.search(r"its configuration: (\S+)", demo.printed)
    page = re.search(r"status page: (http://\S+)", demo.printed)
    assert config and page, demo.printed
    for command in (f"ybgate status --config {config[1]}", f"ybgate outbox list --config {config[1]}"):
        assert command in demo.printed
    code, out = await ybgate("status", "--config", config[1])
    assert code == 0 and "upstream sim (primary, ACTIVE)" in out, out
    code, out = await ybgate("outbox", "list", "--config", config[1])
    assert code == 0 and "9101" in out, out  # the upload the demo made for the download sample
    host, port = re.match(r"http://([\d.]+):(\d+)/", page[1]).groups()  # type: ignore[union-attr]
    html = await request("GET", "/", host=host, port=int(port))
    assert html.status == 200 and b"<script" in html.body

    samples = re.findall(r"^    (.+?)\s{2,}(\S+\.json)\s+POST (\S+)$", demo.printed, re.M)
    assert [name for _, name, _ in samples] == [
        "9001_signin.json",
        "1101_query.json",
        "2206_presettle.json",
        "2207_settle.json",
        "9101_upload.json",
        "9102_download.json",
    ]
    folder = Path(config[1]).parent / "requests"
    java = FAMILIES[0]
    for what, name, path in samples:
        body = (folder / name).read_bytes()
        answer = await demo.send(java, body, path)
        if name.startswith("9102"):
            assert answer.headers.get("content-type") == "application/octet-stream", what
            assert answer.body.startswith(b"ybgate demo: a file")
            continue
        doc = read(answer, java)
        assert str(doc["infcode"]) == "0", (what, doc.get("gateway_error"), doc.get("err_msg"))
        if name.startswith("2207"):
            assert read(await demo.send(java, body, path), java) == doc  # posted twice: the same answer
            msgid = json.loads(body)["msgid"]
            ledger = await demo.ledger()
            assert [s["msgid"] for s in ledger["settlements"]].count(msgid) == 1
