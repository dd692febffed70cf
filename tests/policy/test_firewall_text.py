"""`ybgate firewall show` prints nft's own text form (#24): what an ops person reads with `nft list ruleset`, not
hundreds of lines of JSON. The text comes from the real nft, loading the rendered batch into a throwaway user and
network namespace; this host's own tables are not touched."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.policy.firewall import FirewallError, render
from gateway.policy.loader import load_policy_text
from gateway.policy.nft import as_text

POLICY = """
upstreams: [{host: 10.1.0.1, port: 8443}, {host: "fd00::1", port: 8443}]
callback: {address: 10.0.0.2, port: 9443, sources: [10.1.0.0/16, 10.2.0.1/32]}
"""


def test_the_rendered_table_as_nft_prints_it() -> None:
    text = as_text(render(load_policy_text(POLICY, "p.yaml"), "eth1").text())
    assert text.startswith("table inet ybgate {")
    assert 'iifname "eth1"' in text or 'oifname "eth1"' in text
    assert "ip daddr 10.1.0.1 tcp dport 8443" in text
    assert "ip6 daddr fd00::1 tcp dport 8443" in text
    assert "ip saddr { 10.1.0.0/16, 10.2.0.1 }" in text or "10.1.0.0/16" in text
    assert 'comment "ybgate: upstream 10.1.0.1:8443"' in text
    # the host's ruleset is not where it was loaded
    host = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, timeout=10, check=False)
    assert "inet ybgate" not in host.stdout


def test_a_batch_nft_refuses_is_a_one_line_error() -> None:
    with pytest.raises(FirewallError, match=r"cannot render the table as nft text: .*--json prints it"):
        as_text(json.dumps({"nftables": [{"add": {"rule": {"family": "inet", "table": "nope"}}}]}))


def test_the_cli_prints_text_by_default_and_json_on_request(tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "up.yaml").write_text(POLICY)
    config = tmp_path / "ybgate.yaml"
    config.write_text(
        f"development: true\nstate_dir: {tmp_path}/state\nruntime_dir: {tmp_path}/run\n"
        "upstreams: [{name: p, host: 10.1.0.1, port: 8443, transport: tcp}]\n"
        f"policy: {{paths: [{policies}], firewall: {{enabled: false, interface: eth1}}}}\n"
    )

    def show(*extra: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "gateway", "firewall", "show", "--config", str(config), *extra],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert show().startswith("table inet ybgate {")
    assert json.loads(show("--json"))["nftables"][0] == {"add": {"table": {"family": "inet", "name": "ybgate"}}}
