"""Prometheus metrics and status on the admin listener reflect what the HIS API did."""

from __future__ import annotations

import json

from prometheus_client.parser import text_string_to_metric_families

from gateway.http1.unix_client import request

from conftest import Gateway, example, fresh


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


async def test_metrics_count_answers_refusals_and_failures(gateway: Gateway) -> None:
    assert gateway.daemon.admin_address is not None
    host, port = gateway.daemon.admin_address
    sign_no = await gateway.sign_in()
    await gateway.post(example("1101_query_request.json") | {"sign_no": sign_no})
    await gateway.post(example("9001_signin_request.json") | {"msgid": "bad"})
    await gateway.post(b"\xff\xfe", headers=[("Content-Type", "application/json")])
    gateway.sim.faults.set("2207", {"kind": "drop_after", "times": 1})
    await gateway.post(example("2207_settle_request.json") | {"sign_no": sign_no})

    reply = await request("GET", "/metrics", host=host, port=port)
    assert reply.status == 200
    assert reply.headers.get("content-type", "").startswith("text/plain")
    m = samples(reply.body.decode())
    assert m[("ybgate_requests_total", (("infno", "9001"), ("outcome", "answered")))] == 1
    assert m[("ybgate_requests_total", (("infno", "1101"), ("outcome", "answered")))] == 1
    assert m[("ybgate_requests_total", (("infno", "2207"), ("outcome", "reversed")))] == 1
    assert m[("ybgate_refusals_total", (("kind", "bad_envelope"),))] == 1
    assert m[("ybgate_refusals_total", (("kind", "bad_encoding"),))] == 1
    assert m[("ybgate_request_seconds_count", (("infno", "1101"),))] == 1
    assert m[("ybgate_upstream_seconds_count", (("upstream", "sim"),))] == 2
    assert m[("ybgate_requests_in_flight", ())] == 0
    assert m[("ybgate_build_info", (("version", "0.1.0"),))] == 1


async def test_status_and_read_only_admin(gateway: Gateway) -> None:
    assert gateway.daemon.admin_address is not None
    host, port = gateway.daemon.admin_address
    status = json.loads((await request("GET", "/status", host=host, port=port)).body)
    [up] = status["upstreams"]
    platform = gateway.sim.addresses.platform
    assert up | {"healthy_for_s": 0, "last_success": 0} == {
        "name": "sim",
        "role": "primary",
        "address": f"{platform[0]}:{platform[1]}",
        "transport": "tcp",
        "active": True,
        "breaker": "closed",
        "healthy_for_s": 0,
        "last_success": 0,  # the probe's, at start
        "last_failure": None,
        "last_failure_cause": "",
        "tlcp_handshakes": {"full": 0, "resumed": 0},
        "route": None,  # no interface watched
    }
    assert status["in_flight"] == 0
    assert (await request("POST", "/metrics", b"x", host=host, port=port)).status == 405
    assert (await request("GET", "/nope", host=host, port=port)).status == 404


async def test_outbox_depth_and_in_doubt_age(gateway: Gateway) -> None:
    """A check-first upload whose answer is lost stays in doubt: metrics and /status show it and its age."""
    assert gateway.daemon.admin_address is not None and gateway.daemon.checks is not None
    host, port = gateway.daemon.admin_address
    sign_no = await gateway.sign_in()
    gateway.sim.faults.set("2204", {"kind": "drop_after", "times": 1})
    upload = example("2207_settle_request.json") | {
        "infno": "2204",
        "sign_no": sign_no,
        "input": {"feedetail": [{"feedetl_sn": "1", "mdtrt_id": "MD1", "det_item_fee_sumamt": "12.00"}]},
    }
    await gateway.post(upload)
    await gateway.daemon.checks.refresh_outbox()  # what the check loop does every health.check_interval
    m = samples((await request("GET", "/metrics", host=host, port=port)).body.decode())
    assert m[("ybgate_outbox_rows", (("state", "in_doubt"),))] == 1
    assert m[("ybgate_outbox_rows", (("state", "answered"),))] == 1  # the sign-in
    assert m[("ybgate_outbox_oldest_in_doubt_age_seconds", ())] > 0
    status = json.loads((await request("GET", "/status", host=host, port=port)).body)
    [item] = status["outbox"]["in_doubt"]
    assert item["msgid"] == upload["msgid"] and item["infno"] == "2204" and item["age_s"] >= 0
    assert "outcome unknown" in item["outcome"]


async def test_clock_skew_against_the_platform_is_measured_for_every_profile(gateway: Gateway) -> None:
    """The plain national profile too: the platform's respond_time (Beijing time) against our clock."""
    assert gateway.daemon.admin_address is not None
    host, port = gateway.daemon.admin_address
    await gateway.sign_in()
    m = samples((await request("GET", "/metrics", host=host, port=port)).body.decode())
    skew = m[("ybgate_platform_clock_skew_seconds", (("upstream", "sim"),))]
    assert abs(skew) < 5  # same machine, same clock: only the answer's own latency and rounding
    import time

    gateway.sim.platform.clock = lambda: time.time() + 300  # the platform's clock runs five minutes ahead
    await gateway.post(fresh("9001_signin_request.json"))
    m = samples((await request("GET", "/metrics", host=host, port=port)).body.decode())
    assert 295 < m[("ybgate_platform_clock_skew_seconds", (("upstream", "sim"),))] < 305
