"""`ybgate bench`, the front door to bench/: runs the scripts as real processes, gathers their figures into one
table, JSON and the README's Performance section. Only the cheapest benchmark runs here, and only its shape is
checked: figures are measured by `ybgate bench`, never asserted in a timed test."""

from __future__ import annotations

import json
from pathlib import Path

from gateway.cli.bench import BEGIN, BENCHES, END, bench_dir, markdown, script, table

from conftest import ybgate_output


async def test_policy_bench_through_the_front_door(short_tmp: Path) -> None:
    readme = short_tmp / "README.md"
    readme.write_text(f"# x\n\n## Performance\n\n{BEGIN}\nold table\n{END}\n\n## After\n", encoding="utf-8")
    out_json = short_tmp / "bench.json"
    code, out, err = await ybgate_output("bench", "policy", "--json", str(out_json), "--readme", str(readme))
    assert code == 0, err
    doc = json.loads(out_json.read_text())
    assert doc["failed"] == [] and doc["machine"]["cores"] >= 1
    figures = doc["benches"][0]["figures"]
    assert len(figures) == 4 and all(f["baseline_name"] == "dict lookup" and f["target"] == "max=10" for f in figures)
    assert all(f["ratio"] == f["ybgate"] / f["baseline"] and isinstance(f["met"], bool) for f in figures)
    assert "policy decision µs, unix peer, allowed" in out and "targets met" in out
    text = readme.read_text(encoding="utf-8")
    assert "old table" not in text and "| policy decision µs, tcp peer (CIDR), allowed |" in text
    assert text.endswith(f"{END}\n\n## After\n")


def test_every_benchmark_has_its_script() -> None:
    assert [name for name in BENCHES if not (bench_dir() / script(name)).is_file()] == []


async def test_unknown_benchmark_is_refused() -> None:
    code, out, err = await ybgate_output("bench", "nosuch")
    assert code == 2 and "unknown benchmark(s) nosuch" in err and not out  # an error goes to stderr


def test_table_states_each_target() -> None:
    rows = [
        {"figure": "relay durable req/s", "ybgate": 737.0, "baseline": 4295.0, "baseline_name": "direct",
         "unit": "", "target": "min=2000", "ratio": 737 / 4295, "met": False},
        {"figure": "SM2 sign, ops/s", "ybgate": 1603.0, "baseline": 1575.0, "baseline_name": "openssl",
         "unit": "", "target": "ratio>=0.8", "ratio": 1603 / 1575, "met": True},
    ]  # fmt: skip
    text = table(rows)
    assert "≥ 2000 NOT met" in text and "≥ 0.8× met" in text and "0.17x" in text
    md = markdown(
        {"date": "2026-11-25T10:00:00+08:00", "machine": {"cores": 2}, "seconds": 60, "benches": [{"figures": rows}]}
    )
    assert "| SM2 sign, ops/s | 1,603 | 1,575 (openssl) | 1.02× | ≥ 0.8× met |" in md


async def test_against_compares_a_relay_benchmark_only() -> None:
    code, out, err = await ybgate_output("bench", "policy", "--against", "HEAD")
    assert code == 2 and "--against compares one relay benchmark" in err and not out


async def test_against_a_revision_git_does_not_know_says_so() -> None:
    # the A/B run itself takes minutes (a venv for the other revision, rounds of each side): run by hand with
    # `ybgate bench relay --against REV`; here only that a bad revision stops it at once with git's reason
    code, _, err = await ybgate_output("bench", "relay", "--against", "no-such-revision-0000", "--rounds", "1")
    assert code != 0 and "git cannot export 'no-such-revision-0000'" in err


def test_a_ratio_target_has_no_unit() -> None:
    row = {"figure": "relay gateway CPU per request µs", "ybgate": 740.0, "baseline": 146.0, "baseline_name": "d",
           "unit": "µs", "target": "ratio<=3.7", "ratio": 740 / 146, "met": False}  # fmt: skip
    assert "≤ 3.7× NOT met" in table([row]) and "3.7× µs" not in table([row])
