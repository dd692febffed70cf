"""The daemon does not start without a valid policy, or with an upstream the policy does not list."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import load_config_text
from gateway.errors import ConfigError

from conftest import policy_section, ybgate_output


def config(tmp: Path, port: int, policy: str) -> Path:
    cfg = tmp / "ybgate.yaml"
    cfg.write_text(
        f"development: true\nstate_dir: {tmp}/state\nruntime_dir: {tmp}/run\nadmin: {{enabled: false}}\n"
        f"upstreams: [{{name: sim, host: 127.0.0.1, port: {port}, transport: tcp}}]\n" + policy
    )
    return cfg


async def test_no_policy_no_start(short_tmp: Path) -> None:
    cfg = config(short_tmp, 9, f"policy: {{paths: [{short_tmp}/nowhere]}}\n")
    code, _, err = await ybgate_output("run", "--config", str(cfg))
    assert code == 1 and f"{short_tmp}/nowhere: no such policy file or directory" in err
    assert not (short_tmp / "run" / "api.sock").exists()


async def test_unlisted_upstream_no_start(short_tmp: Path) -> None:
    cfg = config(short_tmp, 9, policy_section(short_tmp, ("127.0.0.1", 10)))
    code, _, err = await ybgate_output("run", "--config", str(cfg))
    assert code == 1 and "sim (127.0.0.1:9) are not in the policy's upstream whitelist" in err


async def test_bad_policy_no_start_with_its_position(short_tmp: Path) -> None:
    section = policy_section(short_tmp, ("127.0.0.1", 9))
    pfile = short_tmp / "policies" / "10-demo.yaml"
    pfile.write_text(pfile.read_text().replace("uids: [", "uidz: ["))
    code, _, err = await ybgate_output("run", "--config", str(config(short_tmp, 9, section)))
    assert code == 1 and f"{pfile}:" in err and "uidz: unknown field" in err


def test_firewall_needs_an_interface() -> None:
    with pytest.raises(ConfigError) as info:
        load_config_text(
            "development: true\nupstreams: [{name: s, host: 127.0.0.1, port: 9, transport: tcp}]\n"
            "policy:\n  firewall: {enabled: true}\n",
            "c.yaml",
        )
    assert info.value.lines() == [
        "c.yaml:4:3: policy.firewall: firewall.enabled needs firewall.interface (the 专网 interface to guard)"
    ]
