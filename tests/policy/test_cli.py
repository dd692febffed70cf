"""The policy and firewall commands as ops run them (real processes)."""

from __future__ import annotations

import shutil
from pathlib import Path

from conftest import ybgate_output

POLICIES = Path(__file__).parents[2] / "policies"


async def test_check_accepts_the_shipped_examples() -> None:
    code, out, err = await ybgate_output("policy", "check", str(POLICIES))
    assert code == 0, err
    assert "policy ok" in out and "client his-outpatient (uid 1001): allow @cashier" in out


async def test_check_names_every_problem_and_fails(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("clients:\n  - name: x\n    uids: [1]\n    allow: ['@missing']\nupstreams: [{host: a.b, port: 1}]\n")
    code, out, err = await ybgate_output("policy", "check", str(bad))
    assert code == 1 and "policy ok" not in out
    assert f"{bad}:5:20: upstreams[0].host: 'a.b' is not an IP address literal" in err


async def test_diff_says_who_gains_and_loses_what(tmp_path: Path) -> None:
    new = tmp_path / "new"
    shutil.copytree(POLICIES, new)
    clients = new / "10-clients.yaml"
    text = clients.read_text()
    text = text.replace('allow: ["@session", "@reconciliation"]', 'allow: ["@session", "@reconciliation", "1101"]')
    text = text.replace('deny: ["2201", "2202"]', 'deny: ["2201", "2202", "2207"]')
    clients.write_text(text)
    (new / "20-upstreams.yaml").write_text(
        (new / "20-upstreams.yaml").read_text().replace("10.100.2.10, port: 8443", "10.100.2.11, port: 8443")
    )
    code, out, _ = await ybgate_output("policy", "diff", str(POLICIES), str(new))
    assert code == 0
    assert "+ client finance gains: 1101" in out
    assert "- client his-inpatient loses: 2207" in out
    assert "+ upstream 10.100.2.11:8443 may be dialled" in out
    assert "- upstream 10.100.2.10:8443 no longer whitelisted" in out
    code, out, _ = await ybgate_output("policy", "diff", str(POLICIES), str(POLICIES))
    assert out.strip() == "no change in effect"


async def test_explain_names_the_rule() -> None:
    args = ("policy", "explain", "--policy", str(POLICIES))
    code, out, _ = await ybgate_output(*args, "--client", "10.20.0.9", "--infno", "2201")
    assert code == 1 and out.startswith("DENY") and "clients[his-inpatient].deny 2201" in out
    assert "10-clients.yaml:21:12" in out
    code, out, _ = await ybgate_output(
        *args, "--client", "his-outpatient", "--infno", "2207", "--at", "2026-11-25 12:00"
    )
    assert code == 0 and out.startswith("ALLOW") and "clients[his-outpatient].allow @cashier" in out
    code, out, _ = await ybgate_output(*args, "--client", "uid=1001", "--infno", "2207", "--at", "2026-11-25 23:55")
    assert code == 1 and "nightly-settlement-freeze" in out
    code, out, _ = await ybgate_output(*args, "--client", "uid=1001", "--infno", "1101", "--upstream", "10.9.9.9:8443")
    assert code == 1 and "upstream 10.9.9.9:8443: not whitelisted" in out


async def test_firewall_show_renders_from_the_configured_policy(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "development: true\nupstreams: [{name: p, host: 10.100.1.10, port: 8443, transport: tcp}]\n"
        f"policy: {{paths: [{POLICIES}], firewall: {{enabled: true, interface: eth7}}}}\n"
    )
    code, out, err = await ybgate_output("firewall", "show", "--config", str(cfg))
    assert code == 0, err
    assert '"comment": "ybgate: upstream 10.100.2.10:8443"' in out and '"right": "eth7"' in out
    code, out, err = await ybgate_output("policy", "check", "--config", str(cfg))
    assert code == 0, err
    cfg.write_text(cfg.read_text().replace("10.100.1.10, port: 8443", "10.100.1.10, port: 9443"))
    code, out, err = await ybgate_output("policy", "check", "--config", str(cfg))
    assert code == 1 and "p (10.100.1.10:9443) are not in the policy's upstream whitelist" in err
