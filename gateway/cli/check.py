"""`ybgate check`: the plan the configuration makes, every problem, then one verdict line (like nginx -t)."""

from __future__ import annotations

import sys
from pathlib import Path

from gateway.cli import profiles as cli_profiles
from gateway.cli import refusals as cli_refusals
from gateway.cli.config_file import read_config


def cmd_check(path: Path) -> int:
    """Like nginx -t: the plan, every problem, then one verdict line."""
    config = read_config(path)
    if config is None:
        return 1
    print(f"{path}: plan")
    print(
        f"  HIS API: unix socket {config.api_socket} (mode {config.api.socket_mode:04o}"
        f"{', group ' + config.api.socket_group if config.api.socket_group else ''})"
    )
    for t in config.api.tcp:
        print(f"  HIS API: tcp {t.host}:{t.port}")
    print(f"  platform paths: {', '.join(config.api.paths)}")
    for u in config.upstreams:
        print(f"  upstream {u.name} ({u.role}): {u.transport} {u.host}:{u.port}{cli_profiles.path_of(u)}")
    print(f"  state: {config.state_dir}   runtime: {config.runtime_dir}")
    admin = f"http://{config.admin.host}:{config.admin.port}/ (status page, /metrics)"
    print(f"  admin: {admin if config.admin.enabled else 'off'}")
    if config.mqtt.enabled:
        print(f"  mqtt: {config.mqtt.host}:{config.mqtt.port} topics {config.mqtt.topic_prefix}/(status|health|events)")
    if config.health.interface:
        print(f"  watching 专网 interface {config.health.interface}")
    if config.development:
        print("  WARNING: development mode (plain TCP upstreams allowed); never on a production 前置机")
    notes: list[str] = []
    problems = cli_refusals.problems(config, notes)
    for line in notes:
        print(f"  {line}")
    for line in problems:
        print(line, file=sys.stderr)
    if problems:
        print(f"{path}: configuration rejected ({len(problems)} problem(s))", file=sys.stderr)
        return 1
    print(f"{path}: configuration ok")
    return 0
