"""The HIS face as each family of real HIS clients meets it: the exact bytes each sends, over the LAN's TCP
listener and the local Unix socket, and what the HIS code on that stack gets back (tests/hisface/hisclients.py).

Every gateway refusal and relay outcome must reach these clients as the platform's own failure shape (HTTP 200,
infcode -1, err_msg saying what to do), since their stacks throw on a status of 400 or more without reading it.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest
import pytest_asyncio
from hisclients import FAMILIES, Answer, Family, apache_multipart, call, dotnet_multipart

from gateway.app.daemon import Daemon
from gateway.app.demo import demo_config
from gateway.config import TcpListen
from gateway.platform.stmtfiles import download_input, upload_input
from gateway.sim.server import Simulator

from conftest import fresh

TRANSPORTS = ("tcp", "unix")
LAN_POLICY = """\
clients:
  - name: his-lan
    tcp: {cidrs: [127.0.0.0/8]}
    allow: ["*"]
"""


@dataclass
class Lan:
    daemon: Daemon
    sim: Simulator
    unix: str
    tcp: tuple[str, int]

    async def call(self, family: Family, transport: str, body: bytes, **kw: object) -> Answer:
        where = {"unix": self.unix} if transport == "unix" else {"tcp": self.tcp}
        return await call(family, body, **where, **kw)  # type: ignore[arg-type]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest_asyncio.fixture
async def lan(sim: Simulator, short_tmp: Path) -> AsyncIterator[Lan]:
    """A gateway as a hospital runs it: a LAN HIS on TCP (policy by CIDR) and a local one on the Unix socket,
    both with the product's default answers."""
    assert sim.addresses is not None
    config = demo_config(short_tmp, sim.addresses.platform, answer="platform")
    port = free_port()
    api = config.api.model_copy(update={"tcp": [TcpListen(host="127.0.0.1", port=port)]})
    config = config.model_copy(update={"api": api})
    (short_tmp / "policy" / "lan.yaml").write_text(LAN_POLICY)
    daemon = Daemon(config)
    await daemon.start()
    try:
        yield Lan(daemon, sim, str(config.api_socket), ("127.0.0.1", port))
    finally:
        await daemon.stop(grace=1.0)


def raw(doc: dict[str, object]) -> bytes:
    return json.dumps(doc, ensure_ascii=False).encode("utf-8")


def refusal(answer: Answer, family: Family, kind: str) -> str:
    """The failure as the family's HIS code reads it; returns err_msg."""
    doc = answer.sees(family)
    assert doc is not None, f"{family.name} throws on HTTP {answer.status} and never reads the body"
    assert answer.status == 200 and str(doc["infcode"]) == "-1" and doc["output"] is None
    assert doc["gateway_error"] == kind and answer.headers.get("x-ybgate-error") == kind
    err = str(doc["err_msg"])
    assert err.startswith("[ybgate] ")
    return err


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
async def test_a_sign_in_and_a_refused_envelope(lan: Lan, family: Family, transport: str) -> None:
    ok = await lan.call(family, transport, raw(fresh("9001_signin_request.json")))
    doc = ok.sees(family)
    assert doc is not None and str(doc["infcode"]) == "0" and doc["output"]["signinoutb"]["sign_no"]
    bad = await lan.call(family, transport, raw(fresh("9001_signin_request.json", msgid="short")))
    err = refusal(bad, family, "bad_envelope")
    # the cashier's instruction first, in Chinese, then the detail for the HIS developer
    assert "本次请求未发送到医保平台，未产生费用" in err and "msgid: expected 30 letters or digits" in err


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
async def test_http_level_refusals_are_platform_shaped_too(lan: Lan, family: Family) -> None:
    """Refusals decided before the envelope is read (a path that is no platform service, an oversized body)
    also reach a LAN client as HTTP 200."""
    wrong_path = await lan.call(family, "tcp", raw(fresh("1101_query_request.json")), path="/fsi/api/nothing")
    assert "未发送到医保平台" in refusal(wrong_path, family, "bad_path")
    big = await lan.call(family, "tcp", b"{" + b" " * (2 * 1024 * 1024) + b"}")
    refusal(big, family, "body_too_large")


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
async def test_relay_outcomes_reach_the_cashier(lan: Lan, family: Family) -> None:
    """A settlement whose answer is lost is reversed: the cashier reads "nothing charged, retry with a new msgid";
    with the platform down a sign-in is "not processed". Both as HTTP 200 the HIS code reads."""
    sign_no = json.loads((await lan.call(family, "tcp", raw(fresh("9001_signin_request.json")))).body)["output"][
        "signinoutb"
    ]["sign_no"]
    assert lan.daemon.relay is not None
    lan.daemon.relay.reversal_settle = 0.3  # the simulator answers at once or never
    lan.sim.faults.set("2207", {"kind": "drop_after", "times": 1})
    reversed_ = await lan.call(family, "tcp", raw(fresh("2207_settle_request.json", sign_no=sign_no)))
    assert "已自动冲正，未扣费" in refusal(reversed_, family, "reversed")
    await lan.sim.stop()
    down = await lan.call(family, "tcp", raw(fresh("9001_signin_request.json")))
    assert "未被医保平台处理" in refusal(down, family, "not_processed")


async def test_a_client_may_ask_for_http_statuses(lan: Lan, short_tmp: Path) -> None:
    """`answer: http_status` in a client's policy entry: the kind in the HTTP status, as before (for tools that
    read statuses). A Java HttpURLConnection client would then see an exception and no err_msg."""
    (short_tmp / "policy" / "lan.yaml").write_text(LAN_POLICY + "    answer: http_status\n")
    assert lan.daemon.reload_policy()["result"] == "applied"
    java = FAMILIES[0]
    bad = await lan.call(java, "tcp", raw(fresh("9001_signin_request.json", msgid="short")))
    assert bad.status == 400 and bad.headers.get("x-ybgate-error") == "bad_envelope"
    assert bad.sees(java) is None
    assert json.loads(bad.body)["gateway_error"] == "bad_envelope"  # the body is the same document


DOTNET = [f for f in FAMILIES if f.expect_continue]


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("family", DOTNET, ids=lambda f: f.name)
async def test_expect_100_continue_is_answered(lan: Lan, family: Family, transport: str) -> None:
    """.NET sends its head with Expect: 100-continue and holds the body until "100 Continue" or 350 ms: the
    gateway answers at once, so no call stalls. (The wait here is long only so a loaded machine cannot make the
    interim answer late; on the old code it never came and every .NET call paid the 350 ms.)"""
    answer = await lan.call(family, transport, raw(fresh("9001_signin_request.json")), continue_wait=10)
    assert answer.continued
    doc = answer.sees(family)
    assert doc is not None and str(doc["infcode"]) == "0"


@pytest.mark.parametrize("family", DOTNET, ids=lambda f: f.name)
async def test_a_head_that_decides_gets_the_final_answer_instead(lan: Lan, family: Family) -> None:
    """A path that is no platform service is refused from the head: the final answer comes instead of
    "100 Continue" and the client never sends its body."""
    answer = await lan.call(
        family, "tcp", raw(fresh("1101_query_request.json")), path="/fsi/api/nothing", continue_wait=10
    )
    assert not answer.continued and not answer.body_sent
    assert "未发送到医保平台" in refusal(answer, family, "bad_path")


@pytest.mark.parametrize(
    "head",
    [
        # the body came with the head: nothing is waiting, no interim answer is sent
        b"POST /fsi/api/rsfComIfsService/callService HTTP/1.1\r\nExpect: 100-continue\r\nConnection: close\r\n"
        b"Content-Length: {n}\r\n\r\n",
        # HTTP/1.0 has no interim answers
        b"POST /fsi/api/rsfComIfsService/callService HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: {n}\r\n\r\n",
    ],
)
async def test_no_interim_answer_when_nothing_waits_for_it(lan: Lan, head: bytes) -> None:
    body = raw(fresh("9001_signin_request.json"))
    reader, writer = await asyncio.open_connection(*lan.tcp)
    writer.write(head.replace(b"{n}", str(len(body)).encode()) + body)
    data = await asyncio.wait_for(reader.read(), 30)  # the gateway closes: Connection: close, or HTTP/1.0
    writer.close()
    assert data.startswith(b"HTTP/1.1 200 OK") and b"100 Continue" not in data


async def test_a_gbk_client_declared_in_the_policy(lan: Lan, short_tmp: Path) -> None:
    """A Windows HIS marshals its JSON in the ANSI code page (GBK) and says only application/json. Unknown to
    the policy, it is refused as not UTF-8, never guessed; with `charset: gbk` in its client entry it works, and
    its answers come back in GBK. A charset the request declares still wins."""
    webrequest = next(f for f in FAMILIES if f.name == "dotnet-httpwebrequest")
    doc = fresh("9001_signin_request.json", opter_name="张三")
    gbk = json.dumps(doc, ensure_ascii=False).encode("gbk")
    refused = await lan.call(webrequest, "tcp", gbk)
    assert "charset: gbk" in refusal(refused, webrequest, "bad_encoding")
    (short_tmp / "policy" / "lan.yaml").write_text(LAN_POLICY + "    charset: gbk\n")
    assert lan.daemon.reload_policy()["result"] == "applied"
    ok = await lan.call(webrequest, "tcp", gbk)  # the same bytes: refused before, a fresh msgid still
    assert ok.headers.get("content-type") == "application/json; charset=GBK"
    answer = ok.sees(webrequest)
    assert answer is not None and str(answer["infcode"]) == "0"
    declared = await lan.call(FAMILIES[0], "tcp", raw(fresh("9001_signin_request.json", opter_name="张三")))
    assert declared.headers.get("content-type") == "application/json; charset=utf-8"
    assert str(json.loads(declared.body)["infcode"]) == "0"


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
async def test_a_file_round_trip(lan: Lan, family: Family) -> None:
    """9101 uploads a file (Base64 in fsUploadIn.in, on the file-upload path); 9102 downloads it, and the answer is
    the file's bytes as application/octet-stream, which HIS code writes to disk as it is. A download the platform
    refuses stays a JSON answer."""
    sign_no = json.loads((await lan.call(family, "tcp", raw(fresh("9001_signin_request.json")))).body)["output"][
        "signinoutb"
    ]["sign_no"]
    content = "对账明细\tH44030000001\n".encode() + bytes(range(256))
    up = fresh("9001_signin_request.json", infno="9101", sign_no=sign_no)
    up["input"] = upload_input("明细_202611.zip", content, "H44030000001")
    uploaded = await lan.call(family, "tcp", raw(up), path="/fsi/api/fileupload/upload")
    file_qury_no = json.loads(uploaded.body)["output"]["file_qury_no"]
    down = fresh("9001_signin_request.json", infno="9102", sign_no=sign_no)
    down["input"] = download_input(file_qury_no, "明细_202611.zip", "H44030000001")
    got = await lan.call(family, "tcp", raw(down), path="/fsi/api/fileupload/download")
    assert got.status == 200 and got.headers.get("content-type") == "application/octet-stream"
    assert got.body == content
    disposition = got.headers.get("content-disposition") or ""
    assert disposition.startswith("attachment; ") and quote("明细_202611.zip") in disposition
    down["msgid"] = fresh("9001_signin_request.json")["msgid"]
    down["input"] = download_input("F0000000000", "x.zip", "H44030000001")
    missing = await lan.call(family, "tcp", raw(down), path="/fsi/api/fileupload/download")
    doc = missing.sees(family)
    assert doc is not None and str(doc["infcode"]) != "0" and "不存在" in doc["err_msg"]


@pytest.mark.parametrize("build", [apache_multipart, dotnet_multipart], ids=["apache", "dotnet"])
async def test_a_multipart_upload_on_the_file_upload_path(lan: Lan, build: Callable[..., tuple[Family, bytes]]) -> None:
    """9101 as multipart/form-data (the envelope in jsonStr, the file beside it), as Java and .NET HIS code
    posts it: relayed as the interface's JSON (Base64 in fsUploadIn.in), the file downloadable again, and a
    retry of the same bytes answered from the outbox."""
    java = FAMILIES[0]
    sign_no = json.loads((await lan.call(java, "tcp", raw(fresh("9001_signin_request.json")))).body)["output"][
        "signinoutb"
    ]["sign_no"]
    content = b"PK\x03\x04" + bytes(range(256)) * 4 + b"\r\n--not-a-boundary\r\n"
    up = fresh("9001_signin_request.json", infno="9101", sign_no=sign_no)
    up["input"] = {"fsUploadIn": {"filename": "detail.zip", "fixmedins_code": "H44030000001"}}
    family, body = build("----ybgateBoundary7MA4YWxk", json.dumps(up, ensure_ascii=False), "detail.zip", content)
    first = await lan.call(family, "tcp", body, path="/fsi/api/fileupload/upload")
    answer = first.sees(family)
    assert answer is not None and str(answer["infcode"]) == "0", answer
    again = await lan.call(family, "tcp", body, path="/fsi/api/fileupload/upload")
    assert again.sees(family) == answer
    assert [m.infno for m in lan.sim.ledger.messages].count("9101") == 1
    down = fresh("9001_signin_request.json", infno="9102", sign_no=sign_no)
    down["input"] = download_input(answer["output"]["file_qury_no"], "detail.zip", "H44030000001")
    got = await lan.call(java, "tcp", raw(down), path="/fsi/api/fileupload/download")
    assert got.body == content


async def test_a_multipart_body_that_is_not_an_upload_is_refused(lan: Lan) -> None:
    java = FAMILIES[0]
    family, body = apache_multipart("b0undary", json.dumps(fresh("1101_query_request.json")), "x.zip", b"x")
    assert "only 9101" in refusal(await lan.call(family, "tcp", body), java, "bad_multipart")
    family, body = apache_multipart("b0undary", "{not json", "x.zip", b"x")
    assert "not JSON" in refusal(await lan.call(family, "tcp", body), java, "bad_multipart")


JAVA_CLIENT = Path(__file__).parent / "java" / "HisCall.java"


async def java_sees(stack: str, url: str, body: bytes, tmp: Path) -> str:
    """What a real JDK's HTTP stack gives HIS code for this request (tests/hisface/java/HisCall.java)."""
    java = shutil.which("java")
    assert java, "a JDK (17) must be installed: apt-get install openjdk-17-jdk-headless"
    request_file = tmp / f"req-{stack}.json"
    request_file.write_bytes(body)
    proc = await asyncio.create_subprocess_exec(
        java, str(JAVA_CLIENT), stack, url, str(request_file), stdout=asyncio.subprocess.PIPE
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0
    return out.decode("utf-8").strip()


@pytest.mark.parametrize("stack", ["urlconnection", "httpclient"])
async def test_a_real_jdk_reads_answers_and_refusals(lan: Lan, short_tmp: Path, stack: str) -> None:
    """Not bytes modelled after Java but the JDK itself (HttpURLConnection and java.net.http.HttpClient as HIS
    code configures them by default) over the LAN listener: a sign-in and a refusal are both read as HTTP 200
    bodies; with `answer: http_status` HttpURLConnection throws and the HIS never sees err_msg."""
    url = f"http://{lan.tcp[0]}:{lan.tcp[1]}/fsi/api/rsfComIfsService/callService"
    ok = await java_sees(stack, url, raw(fresh("9001_signin_request.json")), short_tmp)
    status, _, body = ok.partition(" ")
    assert status == "200" and str(json.loads(body)["infcode"]) == "0"
    bad = await java_sees(stack, url, raw(fresh("9001_signin_request.json", msgid="short")), short_tmp)
    status, _, body = bad.partition(" ")
    doc = json.loads(body)
    assert status == "200" and doc["gateway_error"] == "bad_envelope" and "未发送到医保平台" in doc["err_msg"]
    if stack == "urlconnection":
        (short_tmp / "policy" / "lan.yaml").write_text(LAN_POLICY + "    answer: http_status\n")
        assert lan.daemon.reload_policy()["result"] == "applied"
        thrown = await java_sees(stack, url, raw(fresh("9001_signin_request.json", msgid="short")), short_tmp)
        assert thrown == "EXCEPTION java.io.IOException"


APACHE_CLIENT = Path(__file__).parent / "java" / "ApacheCall.java"
APACHE_JARS = ("httpclient", "httpcore", "httpmime", "commons-logging", "commons-codec")


async def apache_sees(tmp: Path, *args: str) -> str:
    """What HIS code on Apache HttpClient 4.5 (Debian's libhttpclient-java) gets (tests/hisface/java/ApacheCall)."""
    java = shutil.which("java")
    jars = [Path("/usr/share/java") / f"{name}.jar" for name in APACHE_JARS]
    assert java and all(j.exists() for j in jars), "apt-get install openjdk-17-jdk-headless libhttpmime-java"
    proc = await asyncio.create_subprocess_exec(
        java, "-cp", ":".join(map(str, jars)), str(APACHE_CLIENT), *args, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0
    return out.decode("utf-8").strip()


async def test_a_real_apache_httpclient_uploads_and_downloads_a_file(lan: Lan, short_tmp: Path) -> None:
    """Apache HttpClient itself: a sign-in as JSON, a 9101 as MultipartEntityBuilder builds it on the upload path,
    and the 9102 answer written to disk as HIS code does: the file that was uploaded, byte for byte."""
    base = f"http://{lan.tcp[0]}:{lan.tcp[1]}/fsi/api"
    (short_tmp / "signin.json").write_bytes(raw(fresh("9001_signin_request.json")))
    status, _, body = (
        await apache_sees(short_tmp, "json", f"{base}/rsfComIfsService/callService", str(short_tmp / "signin.json"))
    ).partition(" ")
    assert status == "200"
    sign_no = json.loads(body)["output"]["signinoutb"]["sign_no"]
    content = "明细\n".encode() + bytes(range(256)) * 8
    (short_tmp / "detail.zip").write_bytes(content)
    up = fresh("9001_signin_request.json", infno="9101", sign_no=sign_no)
    up["input"] = {"fsUploadIn": {"filename": "明细_202611.zip", "fixmedins_code": "H44030000001"}}
    (short_tmp / "up.json").write_bytes(raw(up))
    status, _, body = (
        await apache_sees(
            short_tmp,
            "multipart",
            f"{base}/fileupload/upload",
            str(short_tmp / "up.json"),
            str(short_tmp / "detail.zip"),
            "明细_202611.zip",
        )
    ).partition(" ")
    assert status == "200", body
    file_qury_no = json.loads(body)["output"]["file_qury_no"]
    down = fresh("9001_signin_request.json", infno="9102", sign_no=sign_no)
    down["input"] = download_input(file_qury_no, "明细_202611.zip", "H44030000001")
    (short_tmp / "down.json").write_bytes(raw(down))
    saved = short_tmp / "saved.zip"
    got = await apache_sees(
        short_tmp, "download", f"{base}/fileupload/download", str(short_tmp / "down.json"), str(saved)
    )
    assert got == "200 application/octet-stream" and saved.read_bytes() == content
