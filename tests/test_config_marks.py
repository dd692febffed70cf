"""Every configuration field says whether a reload applies it or it waits for a restart, once, next to the
field; the reload's comparison keeps and names exactly the RESTART fields that changed."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import BaseModel

from gateway.config import LIVE, RESTART, Applies, Config, load_config_text
from gateway.config_marks import keep_running, mark_of, problems, section_of

BASE = "development: true\nupstreams: [{name: sim, host: 127.0.0.1, port: 9, transport: tcp}]\n"


def covered(model: type[BaseModel], prefix: str = "", inherited: Applies | None = None) -> dict[str, Applies | None]:
    """Every field, walked recursively into sections, with the mark that governs it (its own or its section's)."""
    out: dict[str, Applies | None] = {}
    for name, info in model.model_fields.items():
        mark = mark_of(info) or inherited
        out[prefix + name] = mark
        section = section_of(info.annotation)
        if section is not None:
            out |= covered(section, f"{prefix}{name}.", mark)
    return out


def test_every_field_of_the_config_is_marked() -> None:
    fields = covered(Config)
    assert len(fields) > 100  # the walk reaches into sections (upstreams' tlcp and secrets, api.limits ...)
    sections = {p for p in fields if any(q.startswith(p + ".") for q in fields)}
    unmarked = [p for p, mark in fields.items() if mark is None and p not in sections]
    assert unmarked == []
    assert problems() == []
    # the two that were in neither list before
    assert fields["recon.cutoff"] is RESTART and fields["audit.rotate_bytes"] is LIVE


def test_the_check_finds_a_missing_a_double_and_a_nested_mark() -> None:
    class Inner(BaseModel):
        x: Annotated[int, LIVE] = 0

    class Loose(BaseModel):
        plain: int = 0
        twice: Annotated[int, LIVE, RESTART] = 0
        whole: Annotated[Inner, RESTART] = Inner()

    found = problems(Loose)
    assert found == [
        "plain: no LIVE/RESTART mark (gateway.config.Applies)",
        "twice: marked 2 times",
        "whole.x: marked inside a section that is marked as a whole",
    ]


def test_reload_keeps_and_names_restart_fields_and_takes_live_ones(tmp_path: Path) -> None:
    old = load_config_text(BASE)
    new = load_config_text(
        BASE
        + "audit: {rotate_bytes: 4096, enabled: false}\nrecon: {cutoff: '03:30'}\n"
        + "api: {backlog: 64, default_timeout: 5}\npolicy: {paths: [/p], firewall: {check_interval: 5}}\n"
    )
    kept, changed = keep_running(old, new)
    assert changed == ["api.backlog", "policy.firewall", "audit.enabled", "recon"]
    # RESTART: the running values stay
    assert kept.api.backlog == old.api.backlog and kept.recon == old.recon and kept.audit.enabled is True
    # the running file had no policy section: its firewall settings were the defaults, and stay so
    assert kept.policy is not None and kept.policy.firewall.check_interval == 30.0
    # LIVE: the new values are in force
    assert kept.audit.rotate_bytes == 4096 and kept.api.default_timeout == 5
    assert kept.policy.paths == [Path("/p")]
    assert keep_running(old, old) == (old, [])
