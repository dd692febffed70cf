"""Every `ybgate` command the deploy and operate guides tell an operator to run exists, with the options they give
it (#23): the guides are checked against the parser, so a renamed command or option fails here."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from gateway.cli.main import _parser

DOCS = Path(__file__).resolve().parent.parent / "docs"


def commands() -> list[str]:
    """`ybgate …` in code spans and in sh blocks, one per shell command (split at ;, &&, ||, |)."""
    found = set()
    for doc in ("deploy.md", "operate.md"):
        text = (DOCS / doc).read_text("utf-8")
        code = re.findall(r"```sh\n(.*?)```", text, re.S) + re.findall(r"`([^`\n]+)`", text)
        for snippet in code:
            for line in snippet.splitlines():
                for part in re.split(r"&&|\|\||;|(?<!\\)\|", line.split(" #")[0]):
                    command = re.sub(r"^.*?(?:^|-- )(?=ybgate )", "", part.replace("\\", "").strip())
                    if command.startswith("ybgate "):
                        found.add(command)
    return sorted(found)


def words(command: str) -> list[str]:
    """The command line as argv, placeholders (<msgid>, <ip>:<port>) filled with plausible values."""
    argv = shlex.split(re.sub(r"<[^>]+>", "x", command.replace("$(date +%F)", "d")))[1:]
    return [a for a in argv if a != "…"]


@pytest.mark.parametrize("command", commands())
def test_guide_command_parses(command: str) -> None:
    argv = words(command)
    if argv[0] not in {"check", "run", "status", "probe", "certs", "backup", "restore", "audit", "outbox", "policy"}:
        pytest.fail(f"unknown ybgate command in the guides: {command}")
    _parser().parse_args(argv)


def test_the_guides_name_the_commands_they_rely_on() -> None:
    text = " ".join(commands())
    for needed in ("ybgate check", "ybgate backup", "ybgate restore", "ybgate audit verify", "ybgate certs check"):
        assert needed in text
