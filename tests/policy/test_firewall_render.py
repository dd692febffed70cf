"""Rendering and comparing the table without a kernel: validation at the boundary, rollback on a bad read-back."""

from __future__ import annotations

import json

import pytest

from gateway.policy.firewall import DROP_IN, DROP_OUT, FirewallError, observe, render
from gateway.policy.loader import load_policy_text
from gateway.policy.nft import Firewall

POLICY = """
upstreams: [{host: 10.1.0.1, port: 8443}, {host: "fd00::1", port: 8443}]
callback: {address: 10.0.0.2, port: 9443, sources: [10.1.0.0/16, 10.2.0.1/32]}
"""


def test_render_is_one_atomic_batch_with_named_rules() -> None:
    rs = render(load_policy_text(POLICY, "p.yaml"), "eth1")
    cmds = rs.batch["nftables"]
    assert [next(iter(c)) for c in cmds[:3]] == ["add", "delete", "add"]  # replace the table in one transaction
    assert rs.skeleton == (
        ("inbound", "ybgate: established"),
        ("inbound", "ybgate: ipv6 neighbour discovery"),
        ("inbound", "ybgate: callback 10.0.0.2:9443"),
        ("inbound", DROP_IN),
        ("outbound", "ybgate: established"),
        ("outbound", "ybgate: ipv6 neighbour discovery"),
        ("outbound", "ybgate: upstream 10.1.0.1:8443"),
        ("outbound", "ybgate: upstream [fd00::1]:8443"),
        ("outbound", DROP_OUT),
    )
    text = rs.text()
    assert '{"prefix": {"addr": "10.1.0.0", "len": 16}}' in text and '"10.2.0.1"' in text
    assert json.loads(text) == rs.batch


@pytest.mark.parametrize("ifname", ["eth1; flush ruleset", "", "a" * 16, 'x"y'])
def test_interface_names_are_validated(ifname: str) -> None:
    with pytest.raises(FirewallError, match="not an interface name"):
        render(load_policy_text(POLICY, "p.yaml"), ifname)


class FakeNft:
    """Accepts every batch; lists whatever the test says the kernel holds."""

    def __init__(self, listing: str | None) -> None:
        self.batches: list[str] = []
        self.held = listing

    def apply(self, batch: str) -> None:
        self.batches.append(batch)

    def listing(self) -> str | None:
        return self.held


def test_a_bad_read_back_rolls_back_to_no_table() -> None:
    nft = FakeNft(json.dumps({"nftables": [{"table": {"family": "inet", "name": "ybgate"}}]}))
    fw = Firewall(nft, "eth1")  # type: ignore[arg-type]
    with pytest.raises(FirewallError, match="previous table restored"):
        fw.apply(load_policy_text(POLICY, "p.yaml"))
    assert json.loads(nft.batches[-1])["nftables"][-1] == {"delete": {"table": {"family": "inet", "name": "ybgate"}}}
    assert fw.applied is None


def test_observe_reads_counters_and_ignores_handles() -> None:
    rule = {
        "family": "inet",
        "table": "ybgate",
        "chain": "inbound",
        "handle": 4,
        "comment": DROP_IN,
        "expr": [{"counter": {"packets": 7, "bytes": 420}}, {"drop": None}],
    }
    a = observe(json.dumps({"nftables": [{"rule": rule}]}))
    b = observe(
        json.dumps(
            {
                "nftables": [
                    {"rule": rule | {"handle": 9, "expr": [{"counter": {"packets": 9, "bytes": 1}}, {"drop": None}]}}
                ]
            }
        )
    )
    assert a.dropped_in == 7 and a.fingerprint == b.fingerprint
    assert not observe(None).present
    with pytest.raises(FirewallError):
        observe("not json")
