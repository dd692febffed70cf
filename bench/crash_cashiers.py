"""The crash harnesses' cashiers (#20, #26): one person each, sending the realistic mix and following the README
on every answer — the same msgid again after outcome_unknown or a cut connection, a new msgid after reversed /
not_processed / outbox_unavailable. Now and then, while a money-moving request is in doubt, a second terminal
charges the same person (a new 2207): the gateway holds it back or refuses it, and the refusal must be true.

Where a request goes is the harness's: `post` sends one attempt (bench/crash.py: the one gateway's socket;
bench/ha.py: the cashier's node of a pair, moving to the other when it does not answer), and `heard` sees every
answer as it comes.
"""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

from crash_compare import ASK_AGAIN, BOOKED, MONEY_MOVING, Told
from crash_mix import CANCELS, MIX, Envelopes

from gateway.http1.client import BadUpstreamResponse
from gateway.http1.unix_client import request

PATH = "/fsi/api/rsfComIfsService/callService"
#: the HIS's deadline per request
DEADLINE = 4.0
#: how often a second terminal charges a person whose money-moving request is in doubt, and its deadline: a
#: terminal at the counter waits a second or so before it gives up
SECOND_TERMINAL = 0.5
SECOND_DEADLINE = 1.0


async def post_at(sock: str, doc: dict[str, Any], deadline: float = DEADLINE) -> tuple[str, dict[str, Any]]:
    """One attempt at the gateway on `sock`: the answer's kind (the gateway's own outcome, or answered/refused)
    and the body."""
    try:
        reply = await request(
            "POST",
            PATH,
            json.dumps(doc, ensure_ascii=False).encode(),
            unix_socket=sock,
            headers=[("X-Ybgate-Timeout", str(deadline))],
            time_limit=deadline + 5,
        )
        body = json.loads(reply.body)
    except (OSError, TimeoutError, BadUpstreamResponse, ValueError):
        return "unreachable", {}  # killed under us: nothing definite was said
    if body.get("gateway_error"):
        return str(body["gateway_error"]), body
    return ("answered" if str(body.get("infcode")) == "0" else "refused"), body


def sign_no_of(kind: str, body: dict[str, Any]) -> str | None:
    """The sign_no of a sign-in's answer, None when it was not one."""
    try:
        return str(body["output"]["signinoutb"]["sign_no"]) if kind == "answered" else None
    except (KeyError, TypeError):
        return None


class Cashiers:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.mix = Envelopes()
        self.told: list[Told] = []
        self.stop = asyncio.Event()
        #: after `stop`: a cashier still in doubt asks again until this loop time
        self.settle_by = 0.0

    async def post(self, doc: dict[str, Any], deadline: float, desk: int) -> tuple[str, dict[str, Any]]:
        """One attempt of cashier `desk`'s."""
        raise NotImplementedError

    def heard(self, told: Told, kind: str) -> None:
        """Each answer, as it comes."""

    async def sign_in(self, desk: int) -> str | None:
        return sign_no_of(*await self.post(self.mix.sign_in(), DEADLINE, desk))

    async def ask(
        self, doc: dict[str, Any], desk: int, psn_no: str, meanwhile: Any = None, deadline: float = DEADLINE
    ) -> tuple[Told, dict[str, Any]]:
        """Ask until something definite is said, the same msgid every time, as the README tells the HIS.
        `meanwhile(told)`: what the person's other terminal does once, while this one is in doubt."""
        loop = asyncio.get_running_loop()
        told = Told(str(doc["msgid"]), str(doc["infno"]), person=psn_no, sent_at=loop.time())
        self.told.append(told)
        while True:
            kind, body = await self.post(doc, deadline, desk)
            told.heard(kind, body, loop.time())
            self.heard(told, kind)
            if kind not in ASK_AGAIN or (self.stop.is_set() and loop.time() > self.settle_by):
                return told, body
            if meanwhile is not None:
                await meanwhile(told)
                meanwhile = None
            await asyncio.sleep(0.3)

    async def cashier(self, desk: int) -> None:
        psn_no = f"4400000000000{desk:07d}"
        settled: dict[str, list[str]] = {"2207": [], "2304": []}
        sign_no = await self.sign_in(desk) or ""

        async def second_terminal(first: Told) -> None:
            if first.infno in MONEY_MOVING and self.rng.random() < SECOND_TERMINAL and not self.stop.is_set():
                doc = self.mix.envelope("2207", psn_no, sign_no)
                told, body = await self.ask(doc, desk, psn_no, deadline=SECOND_DEADLINE)
                if told.last == "answered":
                    settled["2207"].append(str(body["output"]["setlinfo"]["setl_id"]))

        weights = list(MIX.values())
        while not self.stop.is_set():
            infno = self.rng.choices(list(MIX), weights)[0]
            family = CANCELS.get(infno)
            if family is not None and not settled[family]:
                infno = family
            setl_id = settled[family][0] if family is not None and infno not in settled else ""
            doc = self.mix.envelope(infno, psn_no, sign_no, setl_id)
            told, body = await self.ask(doc, desk, psn_no, second_terminal)
            if told.last == "answered" and infno in settled:
                settled[infno].append(str(body["output"]["setlinfo"]["setl_id"]))
            elif told.last in BOOKED and family is not None and setl_id in settled[family]:
                settled[family].remove(setl_id)
            elif told.last == "refused" and family is not None and "已撤销" in str(body.get("err_msg")):
                settled[family].remove(setl_id)  # told false before: counted below, not the cashier's concern
            if told.last == "refused" and "签到" in str(body.get("err_msg")):
                sign_no = await self.sign_in(desk) or sign_no
            if told.last == "outbox_unavailable":
                await asyncio.sleep(0.3)  # "请稍后重试": a HIS tries again a little later, with a new msgid
