"""Sign-in on the HIS's behalf, against the simulator: requests without a sign_no get the gateway's, an
expired sign-in is renewed once for all waiting requests and the refused request is sent again (refused for
its sign-in means not processed), and a HIS that manages its own sign_no is left alone."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from structlog.testing import capture_logs

from gateway.app.daemon import Daemon
from gateway.app.demo import demo_config
from gateway.sim.server import Simulator

from conftest import Gateway, fresh, gateway_operator

OPERATOR = gateway_operator()


def gateway_sign_ins(sim: Simulator) -> list[str]:
    return [s.opter_no for s in sim.platform.signins.values() if s.opter_no == OPERATOR.opter]


async def test_requests_without_sign_no_use_the_gateways_session(signing: Gateway) -> None:
    with capture_logs() as logs:
        for _ in range(3):
            reply = await signing.post(fresh("1101_query_request.json", sign_no=""))
            assert reply.status == 200 and json.loads(reply.body)["infcode"] in (0, "0")
    assert len(gateway_sign_ins(signing.sim)) == 1  # one sign-in serves them all
    # The gateway's own 9001 is traceable: its log names the msgid the platform logged it under.
    [signed] = [e for e in logs if e["event"] == "signed_in"]
    assert [m.msgid for m in signing.sim.ledger.messages if m.infno == "9001"] == [signed["msgid"]]
    assert signing.daemon.session is not None and signing.daemon.session.sign_ins == 1
    queries = [m for m in signing.sim.ledger.messages if m.infno == "1101"]
    assert len(queries) == 3


async def test_expired_sign_in_is_renewed_once_and_the_refused_requests_sent_again(signing: Gateway) -> None:
    await signing.post(fresh("1101_query_request.json", sign_no=""))
    signing.sim.platform.expire_signins()
    replies = await asyncio.gather(*(signing.post(fresh("1101_query_request.json", sign_no="")) for _ in range(5)))
    assert all(json.loads(r.body)["infcode"] in (0, "0") for r in replies), [r.body for r in replies]
    assert len(gateway_sign_ins(signing.sim)) == 2  # the first, and one renewal for all five
    settle = await signing.post(fresh("2207_settle_request.json", sign_no=""))
    body = json.loads(settle.body)
    assert body["infcode"] in (0, "0")
    signing.sim.platform.expire_signins()
    again = await signing.post(fresh("2207_settle_request.json", sign_no=""))
    assert json.loads(again.body)["infcode"] in (0, "0")
    # Each settlement booked exactly once, although one was refused first and sent again.
    assert len(signing.sim.ledger.settlements) == 2


async def test_a_his_with_its_own_sign_no_hears_the_expiry_itself(signing: Gateway) -> None:
    sign_no = await signing.sign_in()
    signing.sim.platform.expire_signins()
    reply = await signing.post(fresh("1101_query_request.json", sign_no=sign_no))
    body = json.loads(reply.body)
    assert str(body["infcode"]) == "-1" and "签到" in body["err_msg"]
    assert gateway_sign_ins(signing.sim) == []  # the gateway did not sign in for it


async def test_a_refused_gateway_sign_in_is_a_clear_not_sent(sim: Simulator, short_tmp: Path) -> None:
    assert sim.addresses is not None
    config = demo_config(short_tmp, sim.addresses.platform).model_copy(update={"session": OPERATOR})
    daemon = Daemon(config)
    await daemon.start()
    gw = Gateway(daemon, config, sim)
    try:
        sim.platform.handlers["9001"] = lambda req: (_ for _ in ()).throw(sim_error("操作员不存在"))
        reply = await gw.post(fresh("1101_query_request.json", sign_no=""))
        body = json.loads(reply.body)
        assert reply.status == 502 and "sign-in (9001) was refused: 操作员不存在" in body["err_msg"]
        assert "not sent" in body["err_msg"]
        # Nothing was sent for the HIS: the relay may try the sign-in again while time allows, never the query.
        assert {m.infno for m in sim.ledger.messages} == {"9001"}
    finally:
        await daemon.stop(1)


def sim_error(message: str) -> Exception:
    from gateway.sim.platform import PlatformError

    return PlatformError(message)
