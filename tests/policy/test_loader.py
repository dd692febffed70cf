"""The policy loader: positions on every error, merge rules across files, the shipped examples."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.policy import Caller, LocalTime, PolicyError, load_policy, load_policy_texts

POLICIES = Path(__file__).parents[2] / "policies"
NOON_MON = LocalTime(0, 12 * 60)


def problems(*sources: tuple[str, str]) -> list[str]:
    with pytest.raises(PolicyError) as info:
        load_policy_texts(list(sources))
    return info.value.lines()


def test_shipped_examples_load_and_decide() -> None:
    policy = load_policy([POLICIES])
    assert [Path(f).name for f in policy.files] == ["00-groups.yaml", "10-clients.yaml", "20-upstreams.yaml"]
    his = Caller(uid=1001, gid=1001)
    assert policy.decide(his, "2207", NOON_MON).allowed
    assert policy.decide(his, "5203", NOON_MON).allowed  # 5* via @queries via @cashier
    denied = policy.decide(his, "3201", NOON_MON)
    assert not denied.allowed and denied.client == "his-outpatient" and denied.rule.label == "default deny"
    ward = Caller(address="10.20.0.7")
    assert policy.decide(ward, "2304", NOON_MON).allowed
    no = policy.decide(ward, "2201", NOON_MON)
    assert not no.allowed and no.rule.label == "clients[his-inpatient].deny 2201"
    assert no.rule.where.endswith("10-clients.yaml:21:12")
    assert not policy.decide(Caller(address="10.21.0.7"), "1101", NOON_MON).allowed
    assert policy.upstream_allowed("10.100.1.10", 8443) and not policy.upstream_allowed("10.100.1.10", 8444)


def test_error_names_file_line_column_and_field() -> None:
    text = "clients:\n  - name: a\n    uids: [1]\n    allow: ['1101', '@nope', 'bad entry!']\n"
    lines = problems(("p.yaml", text))
    assert lines == [
        "p.yaml:4:30: clients[0].allow[2]: 'bad entry!' is not an infno, a prefix like 5*, a group like @queries, or *"
    ]
    # Once the schema holds, references are checked: the unknown group with its own position.
    lines = problems(("p.yaml", text.replace(", 'bad entry!'", "")))
    assert lines == ["p.yaml:4:21: clients[0].allow[1]: unknown group @nope (groups: -)"]


def test_unknown_field_points_at_the_key() -> None:
    assert problems(("p.yaml", "version: 1\nclientz: []\n")) == ["p.yaml:2:1: clientz: unknown field"]


def test_yaml_syntax_and_duplicate_keys() -> None:
    assert problems(("p.yaml", "groups:\n  a: [1101\n"))[0].startswith("p.yaml:3:1: YAML syntax")
    assert problems(("p.yaml", "groups:\n  a: ['1']\n  a: ['2']\n")) == ["p.yaml:3:3: groups.a: duplicate key"]


def test_names_and_identities_are_claimed_once_across_files() -> None:
    a = ("a.yaml", "groups: {q: ['1101']}\nclients:\n  - {name: x, uids: [5], allow: ['@q']}\n")
    b = ("b.yaml", "groups: {q: ['5*']}\nclients:\n  - {name: y, uids: [5], cidrs: [10.0.0.0/8], allow: ['*']}\n")
    lines = problems(a, b)
    assert "b.yaml:1:10: groups.q: group defined twice (first at a.yaml:1:10)" in lines
    assert "b.yaml:3:22: clients[0].uids[0]: 5 already belongs to client x (a.yaml:3:22)" in lines


def test_group_cycles_and_address_validation() -> None:
    lines = problems(("p.yaml", "groups:\n  a: ['@b']\n  b: ['@a']\n"))
    assert any("groups include each other" in ln for ln in lines)
    lines = problems(("p.yaml", "upstreams:\n  - {host: platform.example, port: 8443}\n"))
    assert lines == [
        "p.yaml:2:12: upstreams[0].host: 'platform.example' is not an IP address literal "
        "(host names are not allowed here)"
    ]
    lines = problems(("p.yaml", "clients:\n  - {name: a, cidrs: [10.0.0.1/8], allow: ['*']}\n"))
    assert "10.0.0.1/8" in lines[0] and lines[0].startswith("p.yaml:2:23: clients[0].cidrs[0]")


def test_client_needs_an_identity_and_windows_need_known_clients() -> None:
    assert problems(("p.yaml", "clients:\n  - {name: a, allow: ['*']}\n")) == [
        "p.yaml:2:5: clients[0]: a client needs at least one of uids, gids, cidrs (whom does it match?)"
    ]
    text = "maintenance:\n  - {name: w, start: '01:00', end: '02:00', clients: [ghost]}\n"
    assert problems(("p.yaml", text)) == ["p.yaml:2:55: maintenance[0].clients[0]: unknown client ghost"]


def test_merge_order_is_name_order_in_a_directory(tmp_path: Path) -> None:
    (tmp_path / "20-b.yaml").write_text("clients:\n  - {name: b, uids: [2], allow: ['@g']}\n")
    (tmp_path / "10-a.yaml").write_text("groups: {g: ['1101']}\n")
    (tmp_path / ".hidden.yaml").write_text("not: [valid")
    (tmp_path / "notes.txt").write_text("ignored")
    policy = load_policy([tmp_path])
    assert [Path(f).name for f in policy.files] == ["10-a.yaml", "20-b.yaml"]
    assert policy.decide(Caller(uid=2), "1101", NOON_MON).allowed


def test_missing_paths_and_empty_directories(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="no such policy file"):
        load_policy([tmp_path / "nope"])
    with pytest.raises(PolicyError, match="no policy files"):
        load_policy([tmp_path])


def test_digest_changes_with_content() -> None:
    a = load_policy_texts([("p.yaml", "groups: {g: ['1']}\n")])
    b = load_policy_texts([("p.yaml", "groups: {g: ['2']}\n")])
    assert a.digest != b.digest and len(a.digest) == 64
