"""The status page in a real headless Chromium: it loads with no internet, fetches /status, shows the state."""

from __future__ import annotations

import asyncio
import html.parser
import shutil
from pathlib import Path

from gateway.http1.unix_client import request

from conftest import Gateway, example

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


async def chromium(url: str, out: Path, *extra: str) -> str:
    assert shutil.which(CHROMIUM), "chromium must be installed (apt-get install chromium)"
    # As root Chromium needs --no-sandbox; the other flags stop it reaching for the network by itself.
    proc = await asyncio.create_subprocess_exec(
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={out / 'profile'}",
        "--virtual-time-budget=4000",
        "--window-size=1200,900",
        *extra,
        url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    stdout, _ = await asyncio.wait_for(proc.communicate(), 90)
    assert proc.returncode == 0
    return stdout.decode()


class Cells(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: dict[str, str] = {}
        self._stack: list[str | None] = []
        self.cells: list[str] = []
        self._in_td = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._stack.append(dict(attrs).get("id"))
        self._in_td = tag == "td"
        if self._in_td:
            self.cells.append("")

    def handle_endtag(self, tag: str) -> None:
        if self._stack:
            self._stack.pop()
        self._in_td = False

    def handle_data(self, data: str) -> None:
        for ident in self._stack:
            if ident:
                self.ids[ident] = self.ids.get(ident, "") + data
        if self._in_td:
            self.cells[-1] += data


async def test_status_page_in_chromium(gateway: Gateway, tmp_path: Path) -> None:
    assert gateway.daemon.admin_address is not None
    host, port = gateway.daemon.admin_address
    sign_no = await gateway.sign_in()
    for _ in range(5):
        await gateway.post(example("1101_query_request.json") | {"sign_no": sign_no})
    await gateway.post(example("9001_signin_request.json") | {"opter_type": "9"})
    gateway.sim.faults.set("2204", {"kind": "drop_after", "times": 1})
    upload = example("2207_settle_request.json") | {"infno": "2204", "sign_no": sign_no, "input": {"feedetail": []}}
    await gateway.post(upload)
    assert gateway.daemon.checks is not None
    await gateway.daemon.checks.refresh_outbox()

    page = await request("GET", "/", host=host, port=port)
    assert page.status == 200 and b"<script" in page.body
    # No external asset (the SVG namespace URI is an identifier, never fetched): it works without internet.
    assert b"<link" not in page.body and b"src=" not in page.body and b"@import" not in page.body

    dom = await chromium(f"http://{host}:{port}/", tmp_path, "--dump-dom")
    cells = Cells()
    cells.feed(dom)
    assert cells.ids["version"] == "0.1.0"
    assert cells.ids["counts"] == "6 / 1 / 1"  # the HIS's bad envelope is a refusal, the lost answer a failure
    # which refusal and which failure, without opening the table
    assert cells.ids["bykind"] in ("bad_envelope 1 · outcome_unknown 1", "outcome_unknown 1 · bad_envelope 1")
    assert "demo-user" in cells.cells  # the policy client each error came from
    assert cells.ids["outbox"] == "1 / 1"  # the upload whose answer was lost
    assert upload["msgid"] in cells.cells and "2204" in cells.cells
    assert "no TLCP identity configured" in cells.cells
    assert cells.ids["link"] == "not watched"
    assert "requests · p50" in cells.ids["sparkinfo"]
    assert "sim" in cells.cells and "primary" in cells.cells
    assert "bad_envelope" in cells.cells and "HIS refused" in cells.cells and "failed" in cells.cells
    assert any("opter_type" in c for c in cells.cells)
    assert "<polyline" in dom

    shot = tmp_path / "status.png"
    await chromium(f"http://{host}:{port}/", tmp_path, f"--screenshot={shot}")
    assert shot.stat().st_size > 10_000  # a rendered page, not a blank one
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


async def test_status_page_says_when_the_gateway_is_gone(gateway: Gateway, tmp_path: Path) -> None:
    """Served by a stand-in whose /status fails: the page must say its figures are stale, not look healthy."""
    assert gateway.daemon.admin_address is not None
    host, port = gateway.daemon.admin_address
    page = (await request("GET", "/", host=host, port=port)).body
    stand_in = tmp_path / "www"
    stand_in.mkdir()
    (stand_in / "index.html").write_bytes(page)
    dom = await chromium((stand_in / "index.html").as_uri(), tmp_path, "--dump-dom")
    assert 'id="stale" style="display: block;"' in dom
