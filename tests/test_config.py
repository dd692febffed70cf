"""Config errors name file:line:column and the field; a bad file never half-applies."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gateway.config import load_config, load_config_text
from gateway.errors import ConfigError

GOOD = """\
development: true
upstreams:
  - name: sim
    host: 127.0.0.1
    port: 9443
    transport: tcp
"""


def problems(text: str, file: str = "c.yaml") -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config_text(text, file)
    return info.value.lines()


def test_good_config_and_defaults() -> None:
    cfg = load_config_text(GOOD)
    assert cfg.api_socket == Path("/run/ybgate/api.sock")
    assert cfg.api.socket_mode == 0o660
    assert cfg.upstreams[0].role == "primary"
    assert cfg.api.limits.max_body_bytes == 1024 * 1024


def test_wrong_type_names_line_column_and_field() -> None:
    text = GOOD.replace("port: 9443", "port: nine")
    assert problems(text) == [
        "c.yaml:5:11: upstreams[0].port: Input should be a valid integer, unable to parse string as an integer"
    ]


def test_unknown_key_points_at_the_key() -> None:
    text = GOOD + "    colour: red\n"  # belongs to upstreams[0]
    [line] = problems(text)
    assert line == "c.yaml:7:5: upstreams[0].colour: unknown field"
    [line] = problems(GOOD + "loging:\n  level: info\n")
    assert line.startswith("c.yaml:7:1: loging: unknown field")


def test_every_problem_is_reported_in_file_order() -> None:
    text = GOOD.replace("port: 9443", "port: 70000") + "api:\n  socket_mode: '0666'\n  limits:\n    max_headers: x\n"
    lines = problems(text)
    assert [ln.split(": ")[0] for ln in lines] == ["c.yaml:5:11", "c.yaml:8:16", "c.yaml:10:18"]
    assert "less than or equal to 65535" in lines[0]
    assert "must not be open to others" in lines[1]


def test_missing_required_field() -> None:
    [line] = problems("development: true\nupstreams:\n  - name: a\n    port: 1\n")
    assert line == "c.yaml:3:5: upstreams[0].host: required field is missing"
    [line] = problems("development: true\n")
    assert line.endswith("upstreams: required field is missing")


def test_duplicate_keys_and_syntax_errors() -> None:
    [line] = problems(GOOD + "development: false\n")
    assert line == "c.yaml:7:1: development: duplicate key"
    [line] = problems("upstreams: [\n")
    assert line.startswith("c.yaml:2:1: YAML syntax")


def test_plain_tcp_needs_the_development_flag() -> None:
    [line] = problems(GOOD.replace("development: true", "development: false"))
    assert "must be TLCP" in line


def test_semantic_checks() -> None:
    dup = GOOD + "  - name: sim\n    host: 127.0.0.2\n    port: 1\n"
    assert "repeated: sim" in problems(dup)[0]
    backup_only = GOOD.replace("transport: tcp", "transport: tcp\n    role: backup")
    assert "role: primary" in problems(backup_only)[0]
    bad_listen = GOOD + "api:\n  tcp:\n    - host: his.example\n      port: 8080\n"
    assert "IP address literal" in problems(bad_listen)[0]
    bad_path = GOOD + "api:\n  paths: ['fsi/api']\n"
    assert "starts with /" in problems(bad_path)[0]


def test_unreadable_and_non_utf8_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.yaml")
    bad = tmp_path / "gbk.yaml"
    bad.write_bytes("name: 张三\n".encode("gbk"))
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(bad)


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_cli_check_bad_file_exits_1_with_position(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("development: true\nupstreams:\n  - {name: x, host: 127.0.0.1, port: eighty, transport: tcp}\n")
    result = run_cli("check", "--config", str(bad))
    assert result.returncode == 1
    assert f"{bad}:3:" in result.stderr
    assert "upstreams[0].port" in result.stderr
    assert "configuration rejected" in result.stderr


def test_cli_check_good_file_prints_plan(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(GOOD)
    result = run_cli("check", "--config", str(good))
    assert result.returncode == 0, result.stderr
    assert "configuration ok" in result.stdout
    assert "upstream sim (primary): tcp 127.0.0.1:9443" in result.stdout
    assert "development mode" in result.stdout


def test_cli_help_on_every_command() -> None:
    for cmd in ("run", "check", "demo", "sim", "status"):
        result = run_cli(cmd, "--help")
        assert result.returncode == 0
        assert "usage: ybgate " + cmd in result.stdout
    version = run_cli("--version")
    assert version.stdout.startswith("ybgate ")


def test_cli_check_refuses_a_readable_secret(tmp_path: Path) -> None:
    secret = tmp_path / "mqtt.pass"
    secret.write_text("s3cret\n")
    secret.chmod(0o644)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(GOOD + f"mqtt: {{enabled: true, password_file: {secret}}}\n")
    result = run_cli("check", "--config", str(cfg))
    assert result.returncode == 1
    assert f"mqtt.password_file: {secret}: mode 0644" in result.stderr and f"chmod 600 {secret}" in result.stderr
    assert "s3cret" not in result.stdout + result.stderr
    secret.chmod(0o600)
    assert run_cli("check", "--config", str(cfg)).returncode == 0


def test_cli_check_loads_the_policy_as_the_daemon_would(tmp_path: Path) -> None:
    """`ybgate check` loads the policy as `run` does: a policy error or an upstream outside the whitelist fails it."""
    policy = tmp_path / "policies"
    policy.mkdir()
    (policy / "10.yaml").write_text('clients:\n  - name: his\n    unix: {gids: [1500]}\n    allow: ["1101", queriez]\n')
    cfg = tmp_path / "c.yaml"
    cfg.write_text(GOOD + f"policy: {{paths: [{policy}]}}\n")
    result = run_cli("check", "--config", str(cfg))
    assert result.returncode == 1 and f"{policy}/10.yaml:4:21: clients[0].allow[1]" in result.stderr
    (policy / "10.yaml").write_text('clients:\n  - name: his\n    unix: {gids: [1500]}\n    allow: ["1101"]\n')
    result = run_cli("check", "--config", str(cfg))
    assert result.returncode == 1 and "not in the policy's upstream whitelist: sim 127.0.0.1:9443" in result.stderr
    (policy / "20.yaml").write_text("upstreams: [{host: 127.0.0.1, port: 9443}]\n")
    result = run_cli("check", "--config", str(cfg))
    assert result.returncode == 0 and "1 client(s), 1 upstream(s)" in result.stdout, result.stderr


def test_loading_keeps_nothing_alive() -> None:
    # Each policy reload parses YAML: a loader that remembered the nodes it built grew the daemon by every file read.
    import gc
    import tracemalloc

    from gateway.yamlpos import _SCALAR_LOADER, load_yaml

    text = GOOD * 1 + "\n".join(f"k{i}: [a, 1, 2.5, true, 2026-11-25]" for i in range(200))
    load_yaml(text, "c.yaml")
    assert not _SCALAR_LOADER.constructed_objects and not _SCALAR_LOADER.recursive_objects
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for _ in range(50):
        load_yaml(text, "c.yaml")
    gc.collect()
    grown = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert grown < 64 * 1024, grown


def test_tlcp_client_auth_choices_default_to_auto_and_refuse_unknown_values() -> None:
    tlcp = load_config_text(GOOD).upstreams[0].tlcp
    assert (tlcp.client_cert_shape, tlcp.certificate_verify, tlcp.alerts) == ("auto", "auto", "auto")
    text = GOOD + "    tlcp: {certificate_verify: sm2}\n"
    (line,) = problems(text)
    assert "upstreams[0].tlcp.certificate_verify" in line and "c.yaml:7" in line
