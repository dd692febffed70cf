"""The policy loader (positions, merging, all-or-nothing) and the engine's decisions, without a daemon."""

from __future__ import annotations

import ipaddress
import timeit
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from gateway.policy.engine import Caller, decide, find_client, upstream_allowed
from gateway.policy.gate import MaintenanceWindow, PolicyDenied, PolicyGate, RateLimited
from gateway.policy.loader import PolicyError, load_policy, load_policy_text
from gateway.policy.model import RateSpec
from gateway.policy.ratelimit import RateLimiter

from conftest import fuzz_examples

REPO = Path(__file__).resolve().parents[2]
MON, NOON = 0, 12 * 60

BASE = """\
groups:
  queries: ["1101", "5*"]
  settlement: ["2207", "2208", "2601"]
clients:
  - name: cashier
    unix: {gids: [1500]}
    allow: [queries, settlement, "9001"]
    deny: ["5301"]
  - name: reports
    unix: {uids: [1501]}
    allow: [queries]
  - name: kiosks
    tcp: {cidrs: [10.20.30.0/24, "fd00::/64"]}
    allow: [queries]
  - name: everyone-1500
    unix: {uids: [1500]}
    allow: ["*"]
upstreams:
  - {host: 10.1.2.3, port: 8443}
maintenance:
  - {name: night, from: "23:50", to: "00:10", deny: [settlement]}
"""


def test_the_shipped_examples_load() -> None:
    policy = load_policy([REPO / "policies"])
    assert [c.name for c in policy.clients] == ["his-outpatient", "his-reports", "self-service-kiosks"]
    assert upstream_allowed(policy, "10.1.2.3", 8443) and upstream_allowed(policy, "10.1.3.3", 8443)
    assert decide(policy, Caller(uid=1501, gid=1501), "5301", MON, NOON).kind == "not_allowed"


def test_decisions() -> None:
    p = load_policy_text(BASE)
    cashier = Caller(uid=1000, gid=1500)
    assert decide(p, cashier, "2207", MON, NOON).allowed
    assert decide(p, cashier, "5203", MON, NOON).allowed  # the 5* prefix
    denied = decide(p, cashier, "5301", MON, NOON)
    assert not denied.allowed and "is denied 5301" in denied.reason and "<policy>:" in denied.reason
    other = decide(p, cashier, "3201", MON, NOON)
    assert not other.allowed and "may not call 3201: allowed queries, settlement, 9001" in other.reason
    # First match wins: uid 1500 is named by a later, wider rule, but its gid matched the cashier rule first.
    assert find_client(p, Caller(uid=1500, gid=1500)).name == "cashier"  # type: ignore[union-attr]
    assert find_client(p, Caller(uid=1500, gid=9)).name == "everyone-1500"  # type: ignore[union-attr]
    nobody = decide(p, Caller(uid=4242, gid=4242), "1101", MON, NOON)
    assert nobody.kind == "no_client" and "default deny" in nobody.reason and nobody.rule == "default deny"
    assert decide(p, Caller(ip="10.20.30.7"), "1101", MON, NOON).allowed
    assert decide(p, Caller(ip="::ffff:10.20.30.7"), "1101", MON, NOON).allowed  # IPv4-mapped
    assert decide(p, Caller(ip="fd00::1"), "1101", MON, NOON).allowed
    assert decide(p, Caller(ip="10.20.31.7"), "1101", MON, NOON).kind == "no_client"
    assert decide(p, Caller(ip="not-an-ip"), "1101", MON, NOON).kind == "no_client"


def test_maintenance_window_over_midnight() -> None:
    p = load_policy_text(BASE)
    cashier = Caller(uid=1000, gid=1500)
    assert decide(p, cashier, "2207", MON, 23 * 60 + 55).kind == "maintenance"
    assert decide(p, cashier, "2207", 1, 5).kind == "maintenance"  # Tuesday 00:05, the window began Monday
    assert decide(p, cashier, "2207", 1, 10).allowed
    assert decide(p, cashier, "1101", MON, 23 * 60 + 55).allowed  # queries are not in the window


def test_upstreams_are_ip_literals_only() -> None:
    p = load_policy_text(BASE)
    assert upstream_allowed(p, "10.1.2.3", 8443)
    assert not upstream_allowed(p, "10.1.2.3", 8444)
    assert not upstream_allowed(p, "platform.example", 8443)


@pytest.mark.parametrize(
    ("text", "where", "message"),
    [
        (
            "clients:\n  - name: a\n    unix: {uids: [1]}\n    allow: [queriez]\n",
            "<policy>:4:13",
            "neither a transaction",
        ),
        ('clients:\n  - name: a\n    tcp: {cidrs: [10.0.0.1/24]}\n    allow: ["1101"]\n', "<policy>:3:19", "CIDR"),
        ('clients:\n  - name: a\n    allow: ["1101"]\n', "<policy>:2:5", "say who this is"),
        (
            'clients:\n  - name: a\n    unix: {users: [no-such-user-here]}\n    allow: ["1101"]\n',
            "<policy>:3:20",
            "no user",
        ),
        ("upstreams:\n  - {host: platform.example, port: 443}\n", "<policy>:2:12", "IP literal"),
        ("clientz: []\n", "<policy>:1:1", "unknown field"),
        ("maintenance:\n  - {name: m, from: '25:00', to: '01:00', deny: ['2207']}\n", "<policy>:2:21", "HH:MM"),
        ("groups:\n  g: ['1101']\n  g: ['1102']\n", "<policy>:3:3", "duplicate"),
        (
            'clients:\n  - name: a\n    unix: {uids: [1]}\n    allow: ["1101"]\n    answer: http\n',
            "<policy>:5:13",
            "'platform' or 'http_status'",
        ),
        (
            'clients:\n  - name: a\n    unix: {uids: [1]}\n    allow: ["1101"]\n    charset: latin1\n',
            "<policy>:5:14",
            "'utf-8' or 'gbk'",
        ),
    ],
)
def test_errors_name_the_line_and_field(text: str, where: str, message: str) -> None:
    with pytest.raises(PolicyError) as info:
        load_policy_text(text)
    assert any(line.startswith(where) and message in line for line in info.value.lines()), info.value.lines()


def test_files_merge_in_name_order_and_a_second_definition_names_both_places(tmp_path: Path) -> None:
    (tmp_path / "00-groups.yaml").write_text('groups:\n  q: ["1101"]\n')
    (tmp_path / "10-a.yaml").write_text("clients:\n  - name: a\n    unix: {uids: [1]}\n    allow: [q]\n")
    (tmp_path / "20-b.yaml").write_text("upstreams: [{host: 10.0.0.1, port: 1}]\n")
    (tmp_path / "notes.txt").write_text("not a policy file")
    policy = load_policy([tmp_path])
    assert decide(policy, Caller(uid=1, gid=1), "1101", MON, NOON).allowed
    (tmp_path / "30-c.yaml").write_text("clients:\n  - name: a\n    unix: {uids: [2]}\n    allow: [q]\n")
    with pytest.raises(PolicyError) as info:
        load_policy([tmp_path])
    [line] = info.value.lines()
    assert line.startswith(f"{tmp_path}/30-c.yaml:2:11") and f"first at {tmp_path}/10-a.yaml:2:11" in line
    with pytest.raises(PolicyError, match="does not exist"):
        load_policy([tmp_path / "nowhere"])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(PolicyError, match="nothing would be allowed"):
        load_policy([empty])


@settings(max_examples=fuzz_examples(300), deadline=None)
@given(st.text(max_size=300))
def test_random_text_never_crashes_the_loader(text: str) -> None:
    try:
        load_policy_text(text)
    except PolicyError as exc:
        assert exc.lines()


# A valid policy with YAML spliced in at any point: anchors and aliases, tags, dates that are no dates.
policy_splices = st.sampled_from(
    ["&a ", "*a", "!!timestamp ", "!!int ", "!!set ", "2020-13-45", "<<: *a", "[", "{", "\n- ", ": ", "'", "&b [*b]"]
)


@st.composite
def spliced_policies(draw: st.DrawFn) -> str:
    text = BASE
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(policy_splices) + text[at:]
    return text


@settings(max_examples=fuzz_examples(300), deadline=None)
@given(spliced_policies())
@example(BASE.replace('"9001"]', '"9001", 2020-13-45]'))
@example(BASE.replace("queries:", "queries: &q", 1).replace("[queries]", "[*q, *q, [*q]]"))
def test_spliced_policies_never_crash_the_loader(text: str) -> None:
    try:
        load_policy_text(text, "p.yaml")
    except PolicyError as exc:
        assert exc.lines() and all(line.startswith("p.yaml:") or line.startswith("?:") for line in exc.lines())


_item = st.sampled_from(["1101", "5*", "*", "q", "2207", "x", "", "22*"])
_client = st.fixed_dictionaries(
    {
        "name": st.sampled_from(["a", "b", "c d", ""]),
        "unix": st.one_of(st.none(), st.fixed_dictionaries({"uids": st.lists(st.integers(-1, 3), max_size=2)})),
        "allow": st.lists(_item, max_size=3),
    }
)


@settings(max_examples=fuzz_examples(300), deadline=None)
@given(
    st.fixed_dictionaries(
        {
            "groups": st.dictionaries(st.sampled_from(["q", "r"]), st.lists(_item, max_size=3)),
            "clients": st.lists(_client, max_size=3),
        }
    )
)
def test_random_structures_never_crash_the_loader(doc: dict[str, object]) -> None:
    import yaml

    try:
        load_policy_text(yaml.safe_dump(doc))
    except PolicyError as exc:
        assert all(line.startswith("<policy>:") for line in exc.lines())


def test_gate_refuses_with_the_rule_and_limits_rates() -> None:
    from datetime import datetime

    gate = PolicyGate(load_policy_text(BASE + "rate_limits:\n  settlement: {per_second: 2, burst: 2}\n"))
    cashier = Caller(uid=1000, gid=1500)
    noon = datetime(2026, 11, 23, 12, 0)  # outside the policy's night window, whenever the test runs
    gate.check(cashier, "2207", now=0.0, local=noon)
    gate.check(cashier, "2207", now=0.0, local=noon)
    with pytest.raises(RateLimited, match="2207 is limited to 2/s over all clients"):
        gate.check(cashier, "2207", now=0.0, local=noon)
    gate.check(cashier, "2207", now=0.5, local=noon)  # one token back after half a second
    with pytest.raises(PolicyDenied) as info:
        gate.check(Caller(uid=7, gid=7), "1101", local=noon)
    assert info.value.http_status == 403 and "default deny" in info.value.message

    with pytest.raises(MaintenanceWindow) as late:
        gate.check(cashier, "2207", now=9.0, local=datetime(2026, 11, 23, 23, 55))
    assert late.value.http_status == 503 and "night" in late.value.message


def test_rate_limiter_is_a_token_bucket() -> None:
    limiter = RateLimiter()
    spec = RateSpec(per_second=10, burst=5)
    assert [limiter.take("k", spec, 0.0) for _ in range(6)] == [True] * 5 + [False]
    assert limiter.take("k", spec, 0.1) and not limiter.take("k", spec, 0.1)
    assert limiter.take("other", spec, 0.1)  # keys are independent


def test_a_decision_stays_fast_with_a_thousand_clients() -> None:
    """Not a timing assertion (bench/policy.py measures): the indexed lookup must not scan the rules."""
    lines = ["clients:"]
    for i in range(1000):
        net = ipaddress.ip_network(f"10.{i // 250}.{i % 250}.0/24")
        lines += [
            f"  - name: c{i}",
            f"    unix: {{uids: [{10000 + i}]}}",
            f"    tcp: {{cidrs: [{net}]}}",
            '    allow: ["1101"]',
        ]
    p = load_policy_text("\n".join(lines) + "\n")
    assert decide(p, Caller(uid=10999, gid=1), "1101", MON, NOON).client.name == "c999"  # type: ignore[union-attr]
    assert decide(p, Caller(ip="10.3.249.9"), "1101", MON, NOON).client.name == "c999"  # type: ignore[union-attr]
    per_call = (
        min(timeit.repeat(lambda: decide(p, Caller(ip="10.3.249.9"), "1101", MON, NOON), number=200, repeat=3)) / 200
    )
    linear = (
        min(
            timeit.repeat(
                lambda: [n for n in (c.cidrs[0] for c in p.clients) if ipaddress.ip_address("10.3.249.9") in n],
                number=20,
                repeat=3,
            )
        )
        / 20
    )
    assert per_call < linear / 5  # the index, not a scan of the thousand rules
