"""Decisions: precedence of uid/gid/networks, deny over allow, windows, rate buckets."""

from __future__ import annotations

from datetime import datetime

from gateway.policy import Caller, LocalTime, RateLimiter, load_policy_texts

POLICY = """
groups:
  q: ["1101", "5*"]
  money: ["2207", "2601"]
clients:
  - {name: by-uid, uids: [1000], allow: ["@q"]}
  - {name: by-gid, gids: [50], allow: ["@money"]}
  - {name: lan, cidrs: [10.0.0.0/8], allow: ["*"], deny: ["52*"]}
  - {name: ward, cidrs: [10.1.2.0/24, "fd00::/64"], allow: ["@q"],
     rate: {per_second: 1, burst: 2}, infno_rates: {"1101": {per_second: 0.5, burst: 1}}}
infno_rates:
  "5203": {per_second: 1, burst: 1}
maintenance:
  - {name: night, days: [sun], start: "23:00", end: "01:00", infnos: ["@money"], clients: [by-gid]}
"""
MON_NOON = LocalTime.of(datetime(2026, 11, 23, 12, 0))  # a Monday


def test_uid_before_gid_before_address() -> None:
    p = load_policy_texts([("p.yaml", POLICY)])
    assert p.client_for(Caller(uid=1000, gid=50)).name == "by-uid"
    assert p.client_for(Caller(uid=7, gid=50)).name == "by-gid"
    assert p.client_for(Caller(address="10.1.2.3")).name == "ward"  # longest prefix
    assert p.client_for(Caller(address="10.9.9.9")).name == "lan"
    assert p.client_for(Caller(address="::ffff:10.9.9.9")).name == "lan"
    assert p.client_for(Caller(address="fd00::1")).name == "ward"
    assert p.client_for(Caller(address="192.168.1.1")) is None
    assert p.client_for(Caller(address="not-an-ip")) is None
    assert p.client_for(Caller(uid=7, gid=8)) is None


def test_deny_beats_allow_and_default_deny_names_itself() -> None:
    p = load_policy_texts([("p.yaml", POLICY)])
    lan = Caller(address="10.9.9.9")
    assert p.decide(lan, "2207", MON_NOON).allowed
    d = p.decide(lan, "5203", MON_NOON)
    assert not d.allowed and d.rule.label == "clients[lan].deny 52*" and d.rule.where == "p.yaml:8:59"
    d = p.decide(Caller(uid=1000), "2207", MON_NOON)
    assert not d.allowed and d.rule.label == "default deny"
    assert "client by-uid for infno 2207" in d.message("2207")
    d = p.decide(Caller(uid=4242, gid=4242), "1101", MON_NOON)
    assert not d.allowed and d.client is None and "uid=4242" in d.reason


def test_maintenance_window_across_midnight() -> None:
    p = load_policy_texts([("p.yaml", POLICY)])
    money = Caller(gid=50)
    sunday_late = LocalTime.of(datetime(2026, 11, 29, 23, 30))
    monday_early = LocalTime.of(datetime(2026, 11, 30, 0, 30))
    monday_after = LocalTime.of(datetime(2026, 11, 30, 1, 0))
    saturday_late = LocalTime.of(datetime(2026, 11, 28, 23, 30))
    for when in (sunday_late, monday_early):
        d = p.decide(money, "2207", when)
        assert not d.allowed and d.rule.label.startswith("maintenance[night]") and "night" in d.reason
    for when in (monday_after, saturday_late):
        assert p.decide(money, "2207", when).allowed
    # Only the listed client is frozen.
    assert p.decide(Caller(address="10.9.9.9"), "2207", sunday_late).allowed


def test_rate_buckets_refill_and_name_the_limit() -> None:
    p = load_policy_texts([("p.yaml", POLICY)])
    ward = p.client_for(Caller(address="10.1.2.3"))
    assert ward is not None
    limiter = RateLimiter(p)
    assert limiter.take(ward, "1101", 0.0) is None
    d = limiter.take(ward, "1101", 0.1)
    assert d is not None and d.rule.label == "clients[ward].infno_rates.1101"
    # The refusal by the per-infno bucket did not spend the client's bucket: one token is left there.
    assert limiter.take(ward, "5101", 0.2) is None
    d = limiter.take(ward, "5102", 0.3)
    assert d is not None and d.rule.label == "clients[ward].rate"
    assert limiter.take(ward, "5102", 1.4) is None  # refilled
    lan = p.client_for(Caller(address="10.9.9.9"))
    assert lan is not None
    assert limiter.take(lan, "5203", 0.0) is None
    d = limiter.take(lan, "5203", 0.5)
    assert d is not None and d.rule.label == "infno_rates.5203"
