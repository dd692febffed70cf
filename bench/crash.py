"""Black-box crash harness: concurrent cashiers against a gateway that is SIGKILLed and restarted, with fault
rounds at the platform, checked at the end against the simulator's ledger and the outbox (#20).

The gateway runs as a real process (`python -m gateway run`), the simulator as another (`python -m gateway sim`,
not killed: its ledger lives in memory). Each cashier serves one person and follows the README on every answer:
the same msgid again after outcome_unknown or a cut connection, a new msgid after reversed / not_processed /
outbox_unavailable. Every count printed must be 0:

- lost: acknowledged (outcome_unknown) but the outbox holds no row for it
- double-booked: one msgid booked more than once at the platform
- told false: told not booked (not processed, reversed, refused…) but booked; told booked but not booked
- left unresolved: still outcome_unknown after the final settle wait, or an outbox row not final
- msgids reused: one msgid under two infnos at the platform

Traffic stays on loopback and a Unix socket; every wait is bounded.

    python bench/crash.py [--kills 50] [--fault-rounds 10] [--cashiers 6]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import itertools
import json
import os
import random
import shutil
import signal
import socket
import sqlite3
import sys
import tempfile
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import figures

from gateway.http1.client import BadUpstreamResponse
from gateway.http1.unix_client import request

PATH = "/fsi/api/rsfComIfsService/callService"
DATA = Path(__file__).resolve().parent.parent / "tests" / "data" / "platform"
#: the realistic mix, by weight; a cancellation needs a settlement of its own family to cancel
MIX = {"1101": 3, "2201": 2, "2204": 2, "2206": 2, "2207": 4, "2208": 2, "2304": 1, "2305": 1}
CANCELS = {"2208": "2207", "2305": "2304"}
#: what the ledger keeps by msgid (settlement and refund lines, visits, fee lines): where "told false" is decided
LEDGER_INFNOS = frozenset({"2201", "2204", "2207", "2208", "2304", "2305"})
#: answers after which the README says: same msgid again
ASK_AGAIN = frozenset({"outcome_unknown", "unreachable"})
BOOKED = frozenset({"answered", "booked_no_answer"})
FAULT_KINDS = ("drop_before", "drop_after", "reset", "garbage", "http502", "refuse", "delay")
#: a 冲正 that finds nothing is believed after this long (the real default is 60 s; the harness shortens it)
REVERSAL_SETTLE = 3.0
#: the HIS's deadline per request
DEADLINE = 4.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Told:
    """What one cashier was told for one msgid: every answer's kind, in order."""

    msgid: str
    infno: str
    kinds: list[str] = field(default_factory=list)

    @property
    def last(self) -> str:
        return self.kinds[-1] if self.kinds else "unreachable"


class Run:
    def __init__(self, work: Path, cashiers: int, seed: int) -> None:
        self.work = work
        self.cashiers = cashiers
        self.rng = random.Random(seed)
        self.sock = str(work / "run" / "api.sock")
        self.told: list[Told] = []
        self.stop = asyncio.Event()
        self.settle_by = 0.0
        self._seq = itertools.count(1)
        self.templates = {
            name: json.loads((DATA / f"{name}.json").read_text(encoding="utf-8"))
            for name in ("1101_query_request", "2207_settle_request", "9001_signin_request")
        }

    def msgid(self) -> str:
        # A HIS numbers its msgids within the second below 9000: 9000-9999 is where the gateway mints its own.
        return f"H44030000001{datetime.now():%Y%m%d%H%M%S}{next(self._seq) % 9000:04d}"

    # -- processes ------------------------------------------------------------------------------------------

    def config(self, platform: int) -> Path:
        cfg = self.work / "ybgate.yaml"
        cfg.write_text(
            f"development: true\nstate_dir: {self.work}/state\nruntime_dir: {self.work}/run\n"
            "admin: {enabled: false}\nlogging: {level: error}\n"
            f"relay: {{reversal_settle: {REVERSAL_SETTLE}}}\n"
            f"upstreams: [{{name: sim, host: 127.0.0.1, port: {platform}, transport: tcp}}]\n"
        )
        return cfg

    async def gateway(self, cfg: Path) -> asyncio.subprocess.Process:
        with (self.work / "gateway.err").open("ab") as err:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "gateway",
                "run",
                "--config",
                str(cfg),
                stdout=asyncio.subprocess.DEVNULL,
                stderr=err,
            )
        for _ in range(600):
            if await self.sign_in() is not None:
                return proc
            if proc.returncode is not None:
                break
            await asyncio.sleep(0.05)
        tail = (self.work / "gateway.err").read_text(errors="replace")[-3000:]
        raise SystemExit(f"crash: the gateway did not start after a SIGKILL; its stderr ends:\n{tail}")

    async def sign_in(self) -> str | None:
        doc = self.templates["9001_signin_request"] | {"msgid": self.msgid()}
        try:
            reply = await request("POST", PATH, json.dumps(doc).encode(), unix_socket=self.sock, time_limit=10)
            return str(json.loads(reply.body)["output"]["signinoutb"]["sign_no"])
        except (OSError, TimeoutError, BadUpstreamResponse, ValueError, KeyError, TypeError):
            return None

    # -- cashiers -------------------------------------------------------------------------------------------

    def envelope(self, infno: str, psn_no: str, sign_no: str, setl_id: str = "") -> dict[str, Any]:
        if infno == "1101":
            return self.templates["1101_query_request"] | {"msgid": self.msgid(), "sign_no": sign_no}
        doc = json.loads(json.dumps(self.templates["2207_settle_request"]))
        doc |= {"infno": infno, "msgid": self.msgid(), "sign_no": sign_no}
        data = doc["input"]["data"]
        # Each person's own visit, and fee lines numbered uniquely within it, as a HIS numbers them: a 2204 whose
        # outcome is unknown is checked by 5204 on (mdtrt_id, feedetl_sn), and repeated numbers would match
        # another upload's lines.
        data |= {"psn_no": psn_no, "mdtrt_id": f"4403{psn_no}", "chrg_bchno": f"CB{next(self._seq):012d}"}
        if infno == "2201":
            doc["input"] = {
                "data": {
                    "psn_no": psn_no,
                    "insutype": "310",
                    "begntime": f"{datetime.now():%Y-%m-%d %H:%M:%S}",
                    "mdtrt_cert_type": "02",
                    "mdtrt_cert_no": data["mdtrt_cert_no"],
                    "ipt_otp_no": f"MZ{next(self._seq):08d}",
                    "atddr_no": "D440300000001",
                    "dr_name": "王医生",
                    "dept_code": "A03",
                    "dept_name": "内科",
                    "caty": "A03",
                }
            }
        elif infno == "2204":
            line = {"feedetl_sn": f"{next(self._seq):010d}", "mdtrt_id": data["mdtrt_id"], "psn_no": psn_no}
            doc["input"] = {"feedetail": [line | {"med_list_codg": "X0000000001", "det_item_fee_sumamt": "12.00"}]}
        elif infno in CANCELS:
            data["setl_id"] = setl_id
        return doc

    async def post(self, doc: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """One attempt: the answer's kind (the gateway's own outcome, or answered/refused) and the body."""
        try:
            reply = await request(
                "POST",
                PATH,
                json.dumps(doc, ensure_ascii=False).encode(),
                unix_socket=self.sock,
                headers=[("X-Ybgate-Timeout", str(DEADLINE))],
                time_limit=DEADLINE + 5,
            )
            body = json.loads(reply.body)
        except (OSError, TimeoutError, BadUpstreamResponse, ValueError):
            return "unreachable", {}  # killed under us: nothing definite was said
        if body.get("gateway_error"):
            return str(body["gateway_error"]), body
        return ("answered" if str(body.get("infcode")) == "0" else "refused"), body

    async def ask(self, doc: dict[str, Any]) -> tuple[Told, dict[str, Any]]:
        """Ask until something definite is said, the same msgid every time, as the README tells the HIS."""
        told = Told(str(doc["msgid"]), str(doc["infno"]))
        self.told.append(told)
        loop = asyncio.get_running_loop()
        while True:
            kind, body = await self.post(doc)
            told.kinds.append(kind)
            if kind not in ASK_AGAIN or (self.stop.is_set() and loop.time() > self.settle_by):
                return told, body
            await asyncio.sleep(0.3)

    async def cashier(self, n: int) -> None:
        psn_no = f"4400000000000{n:07d}"
        settled: dict[str, list[str]] = {"2207": [], "2304": []}
        sign_no = await self.sign_in() or ""
        weights = list(MIX.values())
        while not self.stop.is_set():
            infno = self.rng.choices(list(MIX), weights)[0]
            family = CANCELS.get(infno)
            if family is not None and not settled[family]:
                infno = family
            setl_id = settled[family][0] if family is not None and infno not in settled else ""
            told, body = await self.ask(self.envelope(infno, psn_no, sign_no, setl_id))
            if told.last == "answered" and infno in settled:
                settled[infno].append(str(body["output"]["setlinfo"]["setl_id"]))
            elif told.last in BOOKED and family is not None:
                settled[family].remove(setl_id)
            elif told.last == "refused" and family is not None and "已撤销" in str(body.get("err_msg")):
                settled[family].remove(setl_id)  # told false before: counted below, not the cashier's concern
            if told.last == "refused" and "签到" in str(body.get("err_msg")):
                sign_no = await self.sign_in() or sign_no


def admin(base: str, method: str, path: str, doc: Any = None) -> Any:
    data = None if doc is None else json.dumps(doc).encode()
    req = urllib.request.Request(base + path, data=data, method=method)
    with urllib.request.urlopen(req, timeout=30) as reply:
        return json.loads(reply.read())


def outbox_rows(db: Path) -> dict[str, str]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return dict(conn.execute("SELECT msgid, state FROM outbox").fetchall())
    finally:
        conn.close()


def compare(told: list[Told], ledger: dict[str, Any], outbox: dict[str, str]) -> dict[str, list[str]]:
    """Each count's msgids: what the cashiers were told against the platform's ledger and the outbox."""
    lines = collections.defaultdict(list)
    for line in [*ledger["settlements"], *ledger["refunds"], *ledger["visits"], *ledger["fees"]]:
        lines[line["msgid"]].append(line)
    infnos = collections.defaultdict(set)
    for m in ledger["messages"]:
        if m["msgid"]:
            infnos[m["msgid"]].add(m["infno"])
    out: dict[str, list[str]] = {k: [] for k in ("lost", "double_booked", "told_false", "unresolved", "reused")}
    final = {"answered", "reversed", "failed", "confirmed"}
    for t in told:
        held = [line for line in lines.get(t.msgid, []) if line.get("state") != "reversed"]
        if "outcome_unknown" in t.kinds and t.msgid not in outbox:
            out["lost"].append(t.msgid)
        if len(lines.get(t.msgid, [])) > 1:
            out["double_booked"].append(t.msgid)
        if t.infno in LEDGER_INFNOS and t.last not in ASK_AGAIN and (t.last in BOOKED) != bool(held):
            out["told_false"].append(f"{t.msgid} {t.infno} told {t.last}, booked {len(held)}")
        if t.last in ASK_AGAIN:  # the gateway is up through the settle wait: silence is not an answer
            out["unresolved"].append(t.msgid)
    out["unresolved"] += [m for m, state in outbox.items() if state not in final]
    out["reused"] = [f"{m} {sorted(i)}" for m, i in infnos.items() if len(i) > 1]
    return out


async def main(kills: int, fault_rounds: int, cashiers: int, seed: int, json_path: str | None = None) -> int:
    work = Path(tempfile.mkdtemp(prefix="ybg-crash-"))
    (work / "run").mkdir()
    platform, admin_port = free_port(), free_port()
    base = f"http://127.0.0.1:{admin_port}"
    sim = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway",
        "sim",
        "--port",
        str(platform),
        "--admin-port",
        str(admin_port),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    run = Run(work, cashiers, seed)
    gw: asyncio.subprocess.Process | None = None
    try:
        for _ in range(600):
            try:
                await asyncio.to_thread(admin, base, "GET", "/_sim")
                break
            except OSError:
                await asyncio.sleep(0.05)
        cfg = run.config(platform)
        gw = await run.gateway(cfg)
        tasks = [asyncio.create_task(run.cashier(n)) for n in range(cashiers)]

        async def killer() -> None:
            nonlocal gw
            for _ in range(kills):
                await asyncio.sleep(run.rng.uniform(0.3, 2.0))
                assert gw is not None
                gw.send_signal(signal.SIGKILL)
                await gw.wait()
                gw = await run.gateway(cfg)

        async def faulter() -> None:
            for _ in range(fault_rounds):
                await asyncio.sleep(run.rng.uniform(0.5, 2.0))
                kind = run.rng.choice(FAULT_KINDS)
                spec = {"kind": kind, "times": run.rng.randint(1, 3)} | ({"delay": 6.0} if kind == "delay" else {})
                await asyncio.to_thread(admin, base, "POST", "/_sim/faults", {run.rng.choice(list(MIX)): spec})
                await asyncio.sleep(run.rng.uniform(1.0, 3.0))
                await asyncio.to_thread(admin, base, "DELETE", "/_sim/faults")

        await asyncio.gather(killer(), faulter())
        await asyncio.sleep(1.0)
        run.settle_by = asyncio.get_running_loop().time() + 60 + REVERSAL_SETTLE
        run.stop.set()
        await asyncio.gather(*tasks)
        ledger = await asyncio.to_thread(admin, base, "GET", "/_sim/ledger")
        found = compare(run.told, ledger, outbox_rows(work / "state" / "outbox.db"))
    finally:
        for proc in (gw, sim):
            if proc is not None and proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
                await proc.wait()
        shutil.rmtree(work, ignore_errors=True)
    kinds = collections.Counter(k for t in run.told for k in t.kinds)
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    print(f"{cashiers} cashiers, {kills} gateway SIGKILLs, {fault_rounds} fault rounds, {len(run.told)} msgids")
    print("answers: " + ", ".join(f"{k} {n}" for k, n in kinds.most_common()))
    names = {
        "lost": "lost",
        "double_booked": "double-booked",
        "told_false": "told false",
        "unresolved": "left unresolved",
        "reused": "msgids reused",
    }
    for key, label in names.items():
        print(f"{label:<20}{len(found[key]):>8}")
        for item in found[key][:10]:
            print(f"  {item}")
    figures.write(
        json_path,
        "crash",
        [figures.Figure(label, len(found[key]), None, "", target="max=0") for key, label in names.items()],
        kills=kills,
        fault_rounds=fault_rounds,
        cashiers=cashiers,
        msgids=len(run.told),
        answers=dict(kinds),
    )
    return 1 if any(found.values()) else 0


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kills", type=int, default=50, help="gateway SIGKILLs at random instants")
    ap.add_argument("--fault-rounds", type=int, default=10, help="rounds of simulator faults on a random infno")
    ap.add_argument("--cashiers", type=int, default=6)
    ap.add_argument("--seed", type=int, default=None, help="for a repeatable schedule of kills and faults")
    ap.add_argument("--json", help="also write the figures as JSON to this file")
    a = ap.parse_args()
    sys.exit(asyncio.run(main(a.kills, a.fault_rounds, a.cashiers, a.seed or random.randrange(2**32), a.json)))
