"""The HIS side of the policy on a real gateway: denials before the outbox, in platform shape, by name."""

from __future__ import annotations

import json
import os

from gateway.api.app import caller_of
from gateway.http1.messages import Peer
from gateway.policy import Caller, load_policy_texts

from conftest import Gateway, fresh


def swap(gateway: Gateway, clients: str) -> None:
    host, port = gateway.config.upstreams[0].host, gateway.config.upstreams[0].port
    text = f"upstreams: [{{host: {host}, port: {port}}}]\nclients:\n{clients}"
    assert gateway.daemon.gate is not None
    gateway.daemon.gate.swap(load_policy_texts([("swapped.yaml", text)]))


async def test_denied_transaction_is_403_platform_shaped_and_never_stored(gateway: Gateway) -> None:
    swap(gateway, f"  - {{name: cashier-7, uids: [{os.getuid()}], allow: ['9001', '1101']}}\n")
    doc = fresh("9001_signin_request.json") | {"infno": "2207"}
    reply = await gateway.post(doc)
    body = json.loads(reply.body)
    assert reply.status == 403
    assert body["infcode"] == -1 and body["gateway_error"] == "policy_denied" and body["output"] is None
    assert "client cashier-7 for infno 2207" in body["err_msg"] and "default deny" in body["err_msg"]
    assert gateway.sim.ledger.messages == []
    # Nothing was written to the outbox: once allowed, the same msgid goes to the platform for the first time.
    swap(gateway, f"  - {{name: cashier-7, uids: [{os.getuid()}], allow: ['*']}}\n")
    reply = await gateway.post(doc | {"infno": "9001"})
    assert reply.status == 200 and len(gateway.sim.ledger.messages) == 1
    metrics = gateway.daemon.metrics.render().decode()
    assert 'ybgate_policy_denials_total{client="cashier-7",kind="not_allowed"} 1.0' in metrics


async def test_unknown_caller_and_explicit_deny(gateway: Gateway) -> None:
    swap(gateway, "  - {name: someone-else, uids: [4242424], allow: ['*']}\n")
    reply = await gateway.post(fresh("9001_signin_request.json"))
    assert (
        reply.status == 403
        and f"no client in the policy matches uid={os.getuid()}" in json.loads(reply.body)["err_msg"]
    )
    swap(gateway, f"  - {{name: c, uids: [{os.getuid()}], allow: ['*'], deny: ['9001']}}\n")
    reply = await gateway.post(fresh("9001_signin_request.json"))
    msg = json.loads(reply.body)["err_msg"]
    assert reply.status == 403 and "clients[c].deny 9001 (swapped.yaml:3:" in msg


async def test_rate_limit_is_429(gateway: Gateway) -> None:
    swap(gateway, f"  - {{name: c, uids: [{os.getuid()}], allow: ['*'], rate: {{per_second: 0.01, burst: 2}}}}\n")
    statuses = [(await gateway.post(fresh("9001_signin_request.json"))).status for _ in range(3)]
    assert statuses == [200, 200, 429]
    reply = await gateway.post(fresh("9001_signin_request.json"))
    body = json.loads(reply.body)
    assert body["gateway_error"] == "rate_limited" and "clients[c].rate" in body["err_msg"]


def test_tcp_peers_are_matched_by_address() -> None:
    assert caller_of(Peer(address="10.20.0.7:51234")) == Caller(address="10.20.0.7")
    assert caller_of(Peer(address="::ffff:10.20.0.7:51234")) == Caller(address="::ffff:10.20.0.7")
    assert caller_of(Peer(uid=5, gid=6, pid=7)) == Caller(uid=5, gid=6)
    policy = load_policy_texts([("p.yaml", "clients: [{name: ward, cidrs: [10.20.0.0/24], allow: ['*']}]\n")])
    assert policy.client_for(caller_of(Peer(address="::ffff:10.20.0.7:51234"))).name == "ward"
