"""Sign-in (9001) on the HIS's behalf: a sign_no for requests that come without one, renewed when the
platform says it has expired.

Only requests the HIS sent without a sign_no get the gateway's: a HIS that signs in itself keeps managing
its own session, and hears the platform's "sign-in expired" answer as it is.

When the platform refuses a request because its sign-in expired, the request was not processed (the
platform checks sign_no before it looks at the business content), so after a fresh sign-in it is sent again
whatever its class: this is a definite refusal, not an unknown outcome. A request whose send was ambiguous
never reaches this point: the relay's class rules handle it.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import structlog

from gateway.errors import UpstreamError
from gateway.platform.envelope import RequestEnvelope, ResponseEnvelope, decode_request
from gateway.platform.msgids import MsgidMaker
from gateway.relay.answer import RelayAnswer

log = structlog.get_logger("gateway.relay")

SESSION_INFNOS = frozenset({"9001", "9002"})
#: the platform's words for "sign-in expired or unknown" (provinces phrase it differently)
EXPIRED_MARKERS = ("签到信息已失效", "重新签到", "签到已过期", "签到编号无效", "未签到")


class Sender(Protocol):
    async def submit(self, envelope: RequestEnvelope, deadline: float) -> RelayAnswer: ...


@dataclass(frozen=True)
class Operator:
    """Who the gateway signs in as, and the envelope fields of its own requests."""

    opter: str
    opter_name: str
    opter_type: str
    fixmedins_code: str
    fixmedins_name: str
    mdtrtarea_admvs: str
    mac: str
    ip: str
    recer_sys_code: str = "FSI"
    infver: str = "V1.0"

    def envelope(self, infno: str, msgid: str, inp: dict[str, Any], now: datetime) -> RequestEnvelope:
        """A request of the gateway's own (sign-in, reconciliation), in the same envelope the HIS sends."""
        fields = {
            "infno": infno,
            "msgid": msgid,
            "mdtrtarea_admvs": self.mdtrtarea_admvs,
            "insuplc_admdvs": self.mdtrtarea_admvs,
            "recer_sys_code": self.recer_sys_code,
            "dev_no": "",
            "dev_safe_info": "",
            "cainfo": "",
            "signtype": "",
            "infver": self.infver,
            "opter_type": self.opter_type,
            "opter": self.opter,
            "opter_name": self.opter_name,
            "fixmedins_code": self.fixmedins_code,
            "fixmedins_name": self.fixmedins_name,
            "inf_time": f"{now:%Y-%m-%d %H:%M:%S}",
            "sign_no": "",
            "input": inp,
        }
        return decode_request(json.dumps(fields, ensure_ascii=False).encode("utf-8"))


class SignInFailed(UpstreamError):
    """The platform refused the gateway's own sign-in: nothing was sent for the HIS."""


def sign_in_expired(response: ResponseEnvelope) -> bool:
    return not response.ok and any(m in (response.err_msg or "") for m in EXPIRED_MARKERS)


def with_sign_no(envelope: RequestEnvelope, sign_no: str) -> RequestEnvelope:
    fields = dict(envelope.fields) | {"sign_no": sign_no}
    return decode_request(json.dumps(fields, ensure_ascii=False).encode("utf-8"))


class SignInSession:
    def __init__(
        self,
        sender: Sender,
        operator: Operator,
        *,
        max_age: float = 12 * 3600,
        on_event: Callable[[str, dict[str, Any]], None] | None = None,
        clock: Callable[[], float] = time.time,
        msgids: MsgidMaker | None = None,
    ) -> None:
        self.sender = sender
        self.operator = operator
        self.max_age = max_age
        self.on_event = on_event or (lambda kind, detail: None)
        self.clock = clock
        self.sign_no: str | None = None
        self.signed_at = 0.0
        self.sign_ins = 0
        self._lock = asyncio.Lock()
        self._msgids = msgids or MsgidMaker()

    async def submit(self, envelope: RequestEnvelope, deadline: float) -> RelayAnswer:
        if envelope.infno in SESSION_INFNOS or envelope.fields.get("sign_no"):
            return await self.sender.submit(envelope, deadline)
        sign_no = await self.current(deadline)
        answer = await self.sender.submit(with_sign_no(envelope, sign_no), deadline)
        if not sign_in_expired(answer.response):
            return answer
        log.warning("sign_in_expired", msgid=envelope.msgid, infno=envelope.infno, err_msg=answer.response.err_msg)
        fresh = await self.renew(sign_no, deadline)
        # Refused for its sign-in means not processed: sending it again cannot book anything twice.
        return await self.sender.submit(with_sign_no(envelope, fresh), deadline)

    async def current(self, deadline: float) -> str:
        if self.sign_no is not None and self.clock() - self.signed_at < self.max_age:
            return self.sign_no
        return await self.renew(self.sign_no, deadline)

    async def renew(self, stale: str | None, deadline: float) -> str:
        """A new sign_no unless someone else already replaced `stale` (one sign-in for many waiting requests)."""
        async with self._lock:
            if self.sign_no is not None and self.sign_no != stale and self.clock() - self.signed_at < self.max_age:
                return self.sign_no
            envelope = self._sign_in_envelope()
            answer = await self.sender.submit(envelope, deadline)
            out = answer.response.output if answer.response.ok else None
            sign_no = (out or {}).get("signinoutb", {}).get("sign_no") if isinstance(out, dict) else None
            if not isinstance(sign_no, str) or not sign_no:
                self.on_event("sign_in_failed", {"err_msg": answer.response.err_msg, "msgid": envelope.msgid})
                raise SignInFailed(
                    f"the gateway's sign-in (9001) was refused: {answer.response.err_msg or 'no sign_no in the answer'}"
                )
            self.sign_no, self.signed_at = sign_no, self.clock()
            self.sign_ins += 1
            # the 9001's msgid: the platform logs the sign-in under it
            log.info("signed_in", opter=self.operator.opter, upstream=answer.upstream, msgid=envelope.msgid)
            self.on_event("signed_in", {"opter": self.operator.opter})
            return sign_no

    def _sign_in_envelope(self) -> RequestEnvelope:
        op = self.operator
        now = datetime.now()
        inp = {"signIn": {"opter_no": op.opter, "mac": op.mac, "ip": op.ip}}
        return op.envelope("9001", self._msgids.make(op.fixmedins_code, now), inp, now)
