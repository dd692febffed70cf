"""The upstream fault matrix: every simulator fault × one transaction of each class, each cell through a real
gateway (its own daemon, outbox and Unix socket) against a real simulator, with the simulator's ledger as
ground truth.

EXPECTED is the contract, one row per cell. It lives here, beside the test that asserts it
(test_fault_matrix.py), and bench/faults.py imports it to print the same matrix with timings: the bench already
reads its requests from tests/, and neither the rows nor the cell driver belong in the installed package.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import shutil
import tempfile
import time
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from gateway.app.daemon import Daemon
from gateway.app.demo import demo_config
from gateway.http1.unix_client import request
from gateway.platform.catalogue import national
from gateway.relay.durable import DurableRelay
from gateway.sim.server import Simulator

PLATFORM_PATH = "/fsi/api/rsfComIfsService/callService"
DATA = Path(__file__).resolve().parent.parent / "data" / "platform"

#: the HIS's deadline for every cell (X-Ybgate-Timeout): short, so the whole matrix runs in seconds
DEADLINE = 1.5
#: a late answer that still comes within the deadline, and one that comes after it
SHORT_DELAY = 0.2
LONG_DELAY = 2.2
#: how long the simulator holds the request a restart cuts off: longer than stopping it takes
RESTART_HOLD = 5.0
#: a 冲正 that finds nothing is believed this long after the doubt began: past the late answer's landing
#: (LONG_DELAY - DEADLINE after the doubt), and short of the deadline for the cells that find nothing at all
REVERSAL_SETTLE = 0.95
#: a cell waits at most this long for the gateway to finish resolving before it reads the end state
SETTLE_LIMIT = 6.0

#: what the HIS is told, by kind: a platform answer, or the gateway's own outcome (`gateway_error`)
ANSWERED, REFUSED = "answered", "refused"
NOT_PROCESSED, NO_ANSWER = "not_processed", "upstream_timeout"
REVERSED, UNKNOWN, BOOKED_NO_ANSWER = "reversed", "outcome_unknown", "booked_no_answer"
#: what the HIS may do next, as the table prints it
HIS_WORDS = {
    ANSWERED: "answered",
    REFUSED: "refused by platform",
    NOT_PROCESSED: "not processed: new msgid",
    NO_ANSWER: "no answer: new msgid",
    REVERSED: "reversed: new msgid",
    UNKNOWN: "unknown: do not resend",
    BOOKED_NO_ANSWER: "booked: do not resend",
}
DEFINITE = frozenset(HIS_WORDS) - {UNKNOWN}


@dataclass(frozen=True)
class Fault:
    name: str
    what: str
    #: the simulator fault set on the transaction's infno, firing once (None: no fault)
    spec: dict[str, Any] | None
    #: stop and start the simulator while it holds the request
    restart: bool = False
    #: the platform may still book the request this long after it was sent: ground truth waits for it
    lands_after: float = 0.0


FAULTS: tuple[Fault, ...] = (
    Fault("none", "no fault", None),
    Fault("delay", f"answer {SHORT_DELAY} s late, within the deadline", {"kind": "delay", "delay": SHORT_DELAY}),
    Fault(
        "delay>deadline",
        f"answer {LONG_DELAY} s late, after the HIS's {DEADLINE} s deadline",
        {"kind": "delay", "delay": LONG_DELAY},
        lands_after=LONG_DELAY,
    ),
    Fault("drop_before", "connection closed, nothing booked", {"kind": "drop_before"}),
    Fault("drop_after", "booked, connection closed without an answer", {"kind": "drop_after"}),
    Fault("reset", "booked, connection reset (RST)", {"kind": "reset"}),
    Fault("garbage", "booked, answered with bytes that are not HTTP", {"kind": "garbage"}),
    Fault("http502", "a proxy's HTTP 502, nothing booked", {"kind": "http502"}),
    Fault(
        "restart",
        "platform restarts while holding the request, nothing booked",
        {"kind": "delay", "delay": RESTART_HOLD},
        restart=True,
    ),
)


@dataclass(frozen=True)
class Tx:
    name: str
    infno: str
    tx_class: str
    reversible: bool = False


#: every settlement and cancellation 2601 reverses (#20): each gets the 2207 column's rows
LEDGER_TXS: tuple[Tx, ...] = tuple(
    Tx(f"{verb} {infno}", infno, "money_moving", reversible=True)
    for verb, infno in (
        ("settle", "2207"),
        ("settle", "2207A"),
        ("cancel", "2208"),
        ("settle", "2304"),
        ("cancel", "2305"),
        ("settle", "2102"),
        ("cancel", "2103"),
    )
)
#: a cancellation and the settlement the cell books first (directly at the simulator) for it to cancel
CANCELS = {"2208": "2207", "2305": "2304", "2103": "2102"}

TXS: tuple[Tx, ...] = (
    Tx("query 1101", "1101", "safe"),
    LEDGER_TXS[0],
    Tx("register 2201", "2201", "money_moving"),
    Tx("upload 2204", "2204", "check_first"),
    *LEDGER_TXS[1:],
)


@dataclass(frozen=True)
class Expect:
    """One cell of the contract."""

    fault: str
    tx: str
    #: what the HIS is told within its deadline
    first: str
    #: what asking again with the same msgid returns once the gateway is done (the final answer)
    final: str
    #: the outbox row's final state
    outbox: str
    #: how many times the platform booked it (processed it with infcode 0)
    booked: int
    #: "-" no 冲正 reached the platform; "reversed": it undid the booking; "none found": nothing to undo
    reversal: str


Q, S, R, U = "query 1101", "settle 2207", "register 2201", "upload 2204"
# fmt: off
EXPECTED: tuple[Expect, ...] = tuple(Expect(*row) for row in (
    # A register (money-moving, no 冲正) or an upload (check-first) whose outcome is unknown is resolved by
    # query (5201 / 5204) once the settle time has passed: held → confirmed booked (the HIS must not resend);
    # not held → the register is not processed (new msgid), the upload is sent again and answered.
    # fault            tx  first             final             outbox       booked  reversal
    ("none",           Q, ANSWERED,         ANSWERED,         "answered",  1,      "-"),
    ("none",           S, ANSWERED,         ANSWERED,         "answered",  1,      "-"),
    ("none",           R, ANSWERED,         ANSWERED,         "answered",  1,      "-"),
    ("none",           U, ANSWERED,         ANSWERED,         "answered",  1,      "-"),
    ("delay",          Q, ANSWERED,         ANSWERED,         "answered",  1,      "-"),
    ("delay",          S, ANSWERED,         ANSWERED,         "answered",  1,      "-"),
    ("delay",          R, ANSWERED,         ANSWERED,         "answered",  1,      "-"),
    ("delay",          U, ANSWERED,         ANSWERED,         "answered",  1,      "-"),
    # A query is asked again within the deadline; the late first copy is booked too (harmless for a query).
    ("delay>deadline", Q, ANSWERED,         ANSWERED,         "answered",  2,      "-"),
    # The first 冲正 races the late original and finds nothing; asked again after the settle time, it undoes it.
    ("delay>deadline", S, UNKNOWN,          REVERSED,         "reversed",  1,      "reversed"),
    # The query waits out the settle time, so the late original has landed when it looks.
    ("delay>deadline", R, UNKNOWN,          BOOKED_NO_ANSWER, "confirmed", 1,      "-"),
    ("delay>deadline", U, UNKNOWN,          BOOKED_NO_ANSWER, "confirmed", 1,      "-"),
    # The request left and the connection closed: the gateway cannot tell this from drop_after by itself; the
    # 冲正 or the query tells it that nothing was booked.
    ("drop_before",    Q, ANSWERED,         ANSWERED,         "answered",  1,      "-"),
    ("drop_before",    S, NOT_PROCESSED,    NOT_PROCESSED,    "failed",    0,      "none found"),
    ("drop_before",    R, NOT_PROCESSED,    NOT_PROCESSED,    "failed",    0,      "-"),
    ("drop_before",    U, ANSWERED,         ANSWERED,         "answered",  1,      "-"),
    ("drop_after",     Q, ANSWERED,         ANSWERED,         "answered",  2,      "-"),
    ("drop_after",     S, REVERSED,         REVERSED,         "reversed",  1,      "reversed"),
    ("drop_after",     R, BOOKED_NO_ANSWER, BOOKED_NO_ANSWER, "confirmed", 1,      "-"),
    ("drop_after",     U, BOOKED_NO_ANSWER, BOOKED_NO_ANSWER, "confirmed", 1,      "-"),
    ("reset",          Q, ANSWERED,         ANSWERED,         "answered",  2,      "-"),
    ("reset",          S, REVERSED,         REVERSED,         "reversed",  1,      "reversed"),
    ("reset",          R, BOOKED_NO_ANSWER, BOOKED_NO_ANSWER, "confirmed", 1,      "-"),
    ("reset",          U, BOOKED_NO_ANSWER, BOOKED_NO_ANSWER, "confirmed", 1,      "-"),
    ("garbage",        Q, ANSWERED,         ANSWERED,         "answered",  2,      "-"),
    ("garbage",        S, REVERSED,         REVERSED,         "reversed",  1,      "reversed"),
    ("garbage",        R, BOOKED_NO_ANSWER, BOOKED_NO_ANSWER, "confirmed", 1,      "-"),
    ("garbage",        U, BOOKED_NO_ANSWER, BOOKED_NO_ANSWER, "confirmed", 1,      "-"),
    # A 502 may come from a proxy that had already passed the request on: as unknown as a dropped connection.
    ("http502",        Q, ANSWERED,         ANSWERED,         "answered",  1,      "-"),
    ("http502",        S, NOT_PROCESSED,    NOT_PROCESSED,    "failed",    0,      "none found"),
    ("http502",        R, NOT_PROCESSED,    NOT_PROCESSED,    "failed",    0,      "-"),
    ("http502",        U, ANSWERED,         ANSWERED,         "answered",  1,      "-"),
    ("restart",        Q, ANSWERED,         ANSWERED,         "answered",  1,      "-"),
    ("restart",        S, NOT_PROCESSED,    NOT_PROCESSED,    "failed",    0,      "none found"),
    ("restart",        R, NOT_PROCESSED,    NOT_PROCESSED,    "failed",    0,      "-"),
    ("restart",        U, ANSWERED,         ANSWERED,         "answered",  1,      "-"),
))
# fmt: on
# A cancellation or another settlement family is undone by 冲正 exactly like 2207: the same contract.
EXPECTED += tuple(replace(e, tx=t.name) for t in LEDGER_TXS[1:] for e in EXPECTED if e.tx == S)


def expected(fault: str, tx: str) -> Expect:
    return next(e for e in EXPECTED if e.fault == fault and e.tx == tx)


# -- one cell --------------------------------------------------------------------------------------------------


@dataclass
class Observed:
    fault: str
    tx: str
    first: str = ""
    first_ms: float = 0.0
    final: str = ""
    #: from the first send to the first definite answer the HIS got (None: none, left for ops)
    definite_ms: float | None = None
    outbox: str = ""
    booked: int = 0
    #: settlements the ledger holds for the msgid, and how many are still in force (not reversed/cancelled)
    settlements: int = 0
    live: int = 0
    reversal: str = "-"
    #: every definite answer the HIS got for the msgid was the same bytes
    replay_same: bool = True
    final_text: str = ""
    answers: list[str] = field(default_factory=list)

    @property
    def cell(self) -> tuple[str, str]:
        return self.fault, self.tx


_seq = itertools.count(1)


def msgid() -> str:
    return f"H44030000001{datetime.now():%Y%m%d%H%M%S}{next(_seq) % 10000:04d}"


def envelope(tx: Tx, sign_no: str) -> dict[str, Any]:
    if tx.infno == "1101":
        doc = json.loads((DATA / "1101_query_request.json").read_text(encoding="utf-8"))
        return doc | {"msgid": msgid(), "sign_no": sign_no}
    doc = json.loads((DATA / "2207_settle_request.json").read_text(encoding="utf-8"))
    doc |= {"infno": tx.infno, "msgid": msgid(), "sign_no": sign_no}
    visit = doc["input"]["data"]
    if tx.infno == "2201":
        doc["input"] = {
            "data": {
                "psn_no": visit["psn_no"],
                "insutype": "310",
                "begntime": f"{datetime.now():%Y-%m-%d %H:%M:%S}",
                "mdtrt_cert_type": "02",
                "mdtrt_cert_no": visit["mdtrt_cert_no"],
                "ipt_otp_no": f"MZ{next(_seq):08d}",
                "atddr_no": "D440300000001",
                "dr_name": "王医生",
                "dept_code": "A03",
                "dept_name": "内科",
                "caty": "A03",
            }
        }
    elif tx.infno in CANCELS:
        visit["setl_id"] = ""  # filled by Cell.run with the settlement it books first
    elif tx.infno == "2204":
        line = {"feedetl_sn": "1", "mdtrt_id": visit["mdtrt_id"], "psn_no": visit["psn_no"]}
        doc["input"] = {"feedetail": [line | {"med_list_codg": "X0000000001", "det_item_fee_sumamt": "12.00"}]}
    return doc


def kind_of(body: bytes) -> str:
    doc = json.loads(body)
    if doc.get("gateway_error"):
        return str(doc["gateway_error"])
    return ANSWERED if str(doc.get("infcode")) == "0" else REFUSED


class Cell:
    """One gateway and one simulator for one cell: nothing carries over from another cell (a request left
    in doubt would hold back the next money-moving request for the same person)."""

    def __init__(self, fault: Fault, tx: Tx) -> None:
        self.fault = fault
        self.tx = tx
        self.sim = Simulator()
        self.daemon: Daemon | None = None
        self.dir = Path(tempfile.mkdtemp(prefix="ybg-fm-"))

    async def __aenter__(self) -> Cell:
        addrs = await self.sim.start()
        self.daemon = Daemon(demo_config(self.dir, addrs.platform, level="error"))
        await self.daemon.start()
        relay = self.relay
        # Short pauses so a retry, or a 冲正 after a refused connection, fits in the cell's seconds.
        t = relay.timing
        t.backoff, t.backoff_max, t.resolve_backoff_max, t.min_attempt = 0.05, 0.2, 0.2, 0.3
        t.reversal_settle = REVERSAL_SETTLE
        return self

    async def __aexit__(self, *_: object) -> None:
        try:
            if self.daemon is not None:
                await self.daemon.stop(grace=0.5)
        finally:
            await self.sim.stop()
            shutil.rmtree(self.dir, ignore_errors=True)

    @property
    def relay(self) -> DurableRelay:
        assert self.daemon is not None and self.daemon.relay is not None
        return self.daemon.relay

    async def post(self, doc: dict[str, Any], wait: float = DEADLINE) -> bytes:
        assert self.daemon is not None
        body = json.dumps(doc, ensure_ascii=False).encode()
        reply = await request(
            "POST",
            PLATFORM_PATH,
            body,
            unix_socket=str(self.daemon.config.api_socket),
            headers=[("X-Ybgate-Timeout", str(wait))],
            time_limit=wait + 5,
        )
        return reply.body

    async def sign_in(self) -> str:
        doc = json.loads((DATA / "9001_signin_request.json").read_text(encoding="utf-8")) | {"msgid": msgid()}
        return str(json.loads(await self.post(doc))["output"]["signinoutb"]["sign_no"])

    def book_settlement(self, infno: str, sign_no: str) -> str:
        """The settlement a cancellation cell cancels: booked at the simulator directly, as set-up."""
        doc = envelope(Tx("set-up", infno, "money_moving"), sign_no)
        answer = self.sim.platform.process(doc)
        assert str(answer["infcode"]) == "0", answer
        return str(answer["output"]["setlinfo"]["setl_id"])

    async def restart_platform(self, msgid: str) -> None:
        """Stop the simulator once it holds the request (the request is cut off unprocessed), start it again on
        the same ports: what a platform process restart looks like from the gateway."""
        needle = msgid.encode()
        while not any(needle in body for _, _, body in self.sim.wire):  # noqa: ASYNC110 - the simulator has no event for it
            await asyncio.sleep(0.005)
        assert self.sim.addresses is not None
        (host, port), (_, admin) = self.sim.addresses.platform, self.sim.addresses.admin
        await self.sim.stop()
        await self.sim.start(host, port, admin)

    async def settled(self, msgid: str, started: float) -> bool:
        """True once the gateway has nothing left to do for `msgid` and the platform nothing left to book."""
        assert self.daemon is not None and self.daemon.outbox is not None
        if time.monotonic() < started + self.fault.lands_after + 0.2:
            return False
        row = await self.daemon.outbox.get(msgid)
        assert row is not None
        if row.state.final:
            return True
        # In doubt with no 冲正 or query to come: left for ops, as the catalogue says.
        info = national().classify(self.tx.infno)
        resolvable = (self.tx.tx_class == "money_moving" and self.tx.reversible) or info.check is not None
        return row.state.value == "in_doubt" and not resolvable

    async def run(self) -> Observed:
        obs = Observed(self.fault.name, self.tx.name)
        sign_no = await self.sign_in()
        doc = envelope(self.tx, sign_no)
        mid = str(doc["msgid"])
        if self.tx.infno in CANCELS:
            doc["input"]["data"]["setl_id"] = self.book_settlement(CANCELS[self.tx.infno], sign_no)
        if self.fault.spec is not None:
            self.sim.faults.set(self.tx.infno, self.fault.spec | {"times": 1})
        restart = asyncio.create_task(self.restart_platform(mid)) if self.fault.restart else None
        started = time.monotonic()
        try:
            body = await self.post(doc)
        finally:
            if restart is not None:
                await restart
        obs.first_ms = (time.monotonic() - started) * 1000
        obs.first = kind_of(body)
        definite: set[bytes] = set()
        if obs.first in DEFINITE:
            definite.add(body)
            obs.definite_ms = obs.first_ms
        obs.answers.append(obs.first)
        # The HIS asks again with the same msgid until it hears something definite, as the answer tells it to.
        while not await self.settled(mid, started) and time.monotonic() < started + SETTLE_LIMIT:
            await asyncio.sleep(0.1)
            body = await self.post(doc, wait=0.5)
            kind = kind_of(body)
            obs.answers.append(kind)
            if kind in DEFINITE:
                definite.add(body)
                if obs.definite_ms is None:
                    obs.definite_ms = (time.monotonic() - started) * 1000
        body = await self.post(doc, wait=0.5)
        obs.final, obs.final_text = kind_of(body), str(json.loads(body).get("err_msg") or "")
        obs.answers.append(obs.final)
        if obs.final in DEFINITE:
            definite.add(body)
        obs.replay_same = len(definite) <= 1
        self.ground_truth(obs, mid)
        assert self.daemon is not None and self.daemon.outbox is not None
        row = await self.daemon.outbox.get(mid)
        assert row is not None
        obs.outbox = row.state.value
        return obs

    def ground_truth(self, obs: Observed, mid: str) -> None:
        ledger = self.sim.ledger
        obs.booked = sum(1 for m in ledger.messages if m.msgid == mid and m.infcode == 0)
        # A settlement's line, or a cancellation's refund line: what 2601 must undo.
        settlements = [s for s in [*ledger.settlements, *ledger.refunds] if s.msgid == mid]
        obs.settlements = len(settlements)
        obs.live = sum(1 for s in settlements if s.state == "booked")
        # Each cell has its own simulator: every 2601 it saw is the gateway's 冲正 of this request.
        reversals = [m for m in ledger.messages if m.infno == "2601" and m.infcode is not None]
        if any(s.state == "reversed" for s in settlements):
            obs.reversal = "reversed"
        elif reversals:
            obs.reversal = "none found"


async def run_cell(fault: Fault, tx: Tx) -> Observed:
    async with Cell(fault, tx) as cell:
        return await cell.run()


def violations(obs: Observed, tx: Tx) -> list[str]:
    """What no cell may ever show, whatever its row says."""
    out = []
    if tx.tx_class != "safe" and obs.booked > 1:
        out.append(f"booked {obs.booked} times: a {tx.tx_class} transaction was sent twice")
    if tx in LEDGER_TXS and obs.settlements != obs.booked:
        out.append(f"ledger holds {obs.settlements} settlements for {obs.booked} bookings")
    if not obs.replay_same:
        out.append(f"two different definite answers for one msgid: {obs.answers}")
    if obs.first_ms > (DEADLINE + 0.5) * 1000:
        out.append(f"first answer after {obs.first_ms:.0f} ms: past the {DEADLINE} s deadline")
    # "Retry with a new msgid" is only true when nothing stays booked: otherwise the retry books it twice.
    in_force = obs.live if tx in LEDGER_TXS else obs.booked
    if tx.tx_class != "safe" and obs.final in (NOT_PROCESSED, NO_ANSWER, REVERSED) and in_force:
        out.append(f"told {HIS_WORDS[obs.final]!r} but the platform holds {in_force} booking(s)")
    if obs.final == ANSWERED and obs.booked < 1:
        out.append("answered, but the platform never booked it")
    return out


def differences(obs: Observed, exp: Expect) -> list[str]:
    """Where a cell differs from its row."""
    got = {
        "first": obs.first,
        "final": obs.final,
        "outbox": obs.outbox,
        "booked": obs.booked,
        "reversal": obs.reversal,
    }
    return [f"{k}: expected {getattr(exp, k)!r}, got {v!r}" for k, v in got.items() if getattr(exp, k) != v]


def tx_named(name: str) -> Tx:
    return next(t for t in TXS if t.name == name)


def fault_named(name: str) -> Fault:
    return next(f for f in FAULTS if f.name == name)
