"""`ybgate firewall` as ops run it, and the config section that turns the table on."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import load_config_text
from gateway.errors import ConfigError

from conftest import ybgate_output

POLICIES = Path(__file__).parents[2] / "policies"


async def test_show_renders_the_configured_policy(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "development: true\nupstreams: [{name: p, host: 10.1.2.3, port: 8443, transport: tcp}]\n"
        f"policy:\n  paths: [{POLICIES}]\n"
        "  firewall: {enabled: true, interface: eth7, callback: {address: 10.99.0.5, port: 9443}}\n"
    )
    code, out, err = await ybgate_output("firewall", "show", "--config", str(cfg))
    assert code == 0, err
    assert '"comment": "ybgate: upstream 10.1.3.3:8443"' in out and '"right": "eth7"' in out
    assert '"comment": "ybgate: callback 10.99.0.5:9443"' in out


async def test_without_an_interface_it_says_so(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "development: true\nupstreams: [{name: p, host: 10.1.2.3, port: 8443, transport: tcp}]\n"
        f"policy: {{paths: [{POLICIES}]}}\n"
    )
    code, _, err = await ybgate_output("firewall", "verify", "--config", str(cfg))
    assert code == 1 and "policy.firewall.interface" in err


def test_enabled_firewall_needs_an_interface() -> None:
    with pytest.raises(ConfigError) as info:
        load_config_text(
            "development: true\nupstreams: [{name: s, host: 127.0.0.1, port: 9, transport: tcp}]\n"
            "policy:\n  firewall: {enabled: true}\n",
            "c.yaml",
        )
    assert info.value.lines() == [
        "c.yaml:4:3: policy.firewall: firewall.enabled needs firewall.interface (the 专网 interface to guard)"
    ]
