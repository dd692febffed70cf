"""Ops commands answer broken input with one line and a non-zero exit, never a traceback (#24)."""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any


def ybgate(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            [sys.executable, "-m", "gateway", *args], capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as exc:  # broken input started something that serves: a failure to report
        return subprocess.CompletedProcess(exc.cmd, 0, str(exc.output), f"still running after {timeout} s")


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_gen_test_pki_keeps_an_existing_pki_without_force(tmp_path: Path) -> None:
    pki = tmp_path / "pki"
    assert ybgate("certs", "gen-test-pki", str(pki)).returncode == 0
    before = {p.name: p.read_bytes() for p in pki.iterdir()}
    line = one_line_error(ybgate("certs", "gen-test-pki", str(pki)))
    assert str(pki) in line and "ca.crt.pem" in line and "--force" in line
    assert {p.name: p.read_bytes() for p in pki.iterdir()} == before  # nothing replaced
    forced = ybgate("certs", "gen-test-pki", str(pki), "--force")
    assert forced.returncode == 0, forced.stderr
    assert (pki / "ca.crt.pem").read_bytes() != before["ca.crt.pem"]


def test_gen_test_pki_into_a_bad_directory_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory\n")
    for target in (blocker, blocker / "pki"):
        line = one_line_error(ybgate("certs", "gen-test-pki", str(target)))
        assert line.startswith("ybgate certs gen-test-pki: cannot write to") and str(target) in line


def test_outbox_commands_on_a_file_that_is_not_an_outbox(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "outbox.db").write_bytes(b"this is not an SQLite database, it is garbage\n" * 100)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        f"development: true\nstate_dir: {state}\nupstreams: [{{name: s, host: 127.0.0.1, port: 1, transport: tcp}}]\n"
    )
    for args in (("list",), ("show", "H" * 30)):
        line = one_line_error(ybgate("outbox", *args, "--config", str(cfg)))
        assert line.startswith("ybgate outbox:") and "outbox.db" in line and "not a database" in line


# Commands that serve or work for minutes when their input is fine: the walk gives them broken input only.
LONG_RUNNING = {("run",), ("demo",), ("sim",), ("profile", "sim"), ("bench",)}
GARBAGE_CONFIG = {
    "a directory": None,  # made below: the state directory itself
    "not YAML": "upstreams: [unclosed\n  : : :\n",
    "wrong types": "development: true\nupstreams: 5\n",
}


def leaves(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    """Every runnable command of the argparse tree: a command added later is walked without editing this test."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        return [(path, parser)]
    return [leaf for name, p in subs[0].choices.items() for leaf in leaves(p, (*path, name))]


def broken_value(action: argparse.Action, missing: Path) -> str:
    if action.type is Path:
        return str(missing)
    if action.type is int:
        return "twelve"
    return "no\x7fsuch-thing"  # a name, day, client or target nobody has


def cases(path: tuple[str, ...], parser: argparse.ArgumentParser, tmp: Path, good_config: Path) -> list[list[str]]:
    missing = tmp / "not YAML" / "nothing"  # under a regular file: neither readable nor creatable
    filled: list[str] = []
    typed: list[list[str]] = []
    has_config = False
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction | argparse._StoreTrueAction | argparse._VersionAction):
            continue
        if not action.option_strings:
            filled.append(broken_value(action, missing))
        elif action.dest == "config":
            has_config = True
        elif action.required:
            filled += [action.option_strings[0], broken_value(action, missing)]
        elif action.type is not None or action.choices is not None:
            typed.append([action.option_strings[0], broken_value(action, missing)])
    out = [[*path, *filled, "--no-such-option"]]
    out += [[*path, *filled, *option] for option in typed]
    if has_config:
        configs = [missing, *(tmp / name for name in GARBAGE_CONFIG)]
        if path != ("run",):  # with a good config `run` starts a daemon
            configs.append(good_config)
        out += [[*path, *filled, "--config", str(config)] for config in configs]
    elif filled and path not in LONG_RUNNING:
        out.append([*path, *filled])
    return out


def test_every_command_answers_broken_input_in_one_line(short_tmp: Path) -> None:
    """Every subcommand, with missing files, a directory or garbage as its config, wrong types, garbage arguments
    and a daemon that is not running: a non-zero exit, one line (a rejected config: its problem and the verdict),
    never a traceback. (Unreadable files are not tried: the suite runs as root, who reads everything.)"""
    from gateway.cli.main import _parser

    state = short_tmp / "state"
    state.mkdir()
    for name, text in GARBAGE_CONFIG.items():
        if text is None:
            (short_tmp / name).mkdir()
        else:
            (short_tmp / name).write_text(text)
    good = short_tmp / "good.yaml"  # valid, but no daemon runs with it: nothing listens on its admin port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    good.write_text(
        f"development: true\nstate_dir: {state}\nruntime_dir: {short_tmp / 'run'}\nadmin: {{port: {free}}}\n"
        "upstreams: [{name: s, host: 127.0.0.1, port: 1, transport: tcp}]\n"
    )
    walked = leaves(_parser())
    assert len(walked) > 25 and (("outbox", "resolve") in dict(walked))
    argvs = [argv for path, parser in walked for argv in cases(path, parser, short_tmp, good)]
    argvs += [["probe", "127.0.0.1:1"], ["demo", "--tcp", "nowhere"], ["outbox", "show", "x", "--config", str(good)]]
    with ThreadPoolExecutor(4) as pool:
        results = dict(zip(map(tuple, argvs), pool.map(lambda a: ybgate(*a, timeout=45), argvs), strict=True))
    bad = []
    for argv, result in results.items():
        text = result.stdout + result.stderr
        lines = result.stderr.strip().splitlines()
        if not lines and result.stdout.strip().splitlines()[-1:] and "FAILED:" in result.stdout:
            lines = [line for line in result.stdout.splitlines() if line.startswith("FAILED:")]  # probe's report
        valid_config = str(good) in argv and argv[-2] == "--config"
        if "Traceback" in text or (result.returncode != 0 and not 1 <= len(lines) <= 2):
            bad.append(f"{' '.join(argv)} -> exit {result.returncode}\n{result.stderr[-1500:]}")
        elif result.returncode == 0 and not valid_config:
            bad.append(f"{' '.join(argv)} -> exit 0 on broken input\n{result.stdout[-500:]}")
    assert not bad, f"{len(bad)} of {len(results)} invocations:\n" + "\n".join(bad)
