"""The black-box crash harness (`ybgate bench crash`, bench/crash.py) in its short form: real gateway and
simulator processes SIGKILLed at random instants, simulator faults, a state disk (a tmpfs: root) that fills up
while settlements are at the platform, and every count 0 against the simulator's ledger and the outbox. Its
comparison is checked on hand-made ledgers too, so that a 0 means the harness looked and found nothing."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from benchrun import load_bench, run_bench

COUNTS = (
    "lost",
    "double-booked",
    "told false",
    "left unresolved",
    "msgids reused",
    "ordering refusals false",
    "disk-full rows left",
)


def harness() -> ModuleType:
    return load_bench("crash.py")


@pytest.mark.root
async def test_short_crash_run_counts_nothing_wrong(short_tmp: Path) -> None:
    code, doc, text = await run_bench(
        "crash.py",
        ["--kills", "4", "--platform-kills", "2", "--fault-rounds", "2", "--disk-full-rounds", "1", "--cashiers", "4"],
        short_tmp,
        240,
    )
    assert code == 0, text
    figures = {f["figure"]: f["ybgate"] for f in doc["figures"]}
    assert {k: figures[k] for k in COUNTS} == dict.fromkeys(COUNTS, 0), text
    notes = doc["notes"]
    assert notes["kills"] == 4 and notes["platform_kills"] == 2 and notes["fault_rounds"] == 2, text
    # the disk round did what it is for: the outbox failed to commit while settlements were out, and cashiers were
    # answered meanwhile
    assert notes["disk_rows"]["refusing"] == 1 and sum(notes["while_full"].values()) > 0, text
    # the cashiers got through: requests crossed the kills, and most of those sent while the disk had space were
    # answered by the platform
    answers = notes["answers"]
    assert (
        notes["msgids"] > 50 and answers["answered"] > (notes["msgids"] - answers.get("outbox_unavailable", 0)) // 2
    ), text


def ledger(**lines: list[dict[str, Any]]) -> dict[str, Any]:
    return {"messages": [], "settlements": [], "refunds": [], "visits": [], "fees": []} | lines


def test_comparison_finds_every_kind_of_wrong() -> None:
    crash = harness()
    told = crash.Told
    settle = {"msgid": "A", "state": "booked"}
    fee = {"msgid": "A", "feedetl_sn": "1"}
    cases: list[tuple[str, list[Any], dict[str, Any], dict[str, str]]] = [
        ("told_false", [told("A", "2207", ["not_processed"])], ledger(settlements=[settle]), {"A": "failed"}),
        ("told_false", [told("A", "2208", ["reversed"])], ledger(refunds=[settle]), {"A": "reversed"}),
        ("told_false", [told("A", "2207", ["answered"])], ledger(), {"A": "answered"}),
        ("told_false", [told("A", "2201", ["outbox_unavailable"])], ledger(visits=[settle]), {}),
        ("double_booked", [told("A", "2207", ["answered"])], ledger(settlements=[settle, settle]), {"A": "answered"}),
        ("double_booked", [told("A", "2204", ["answered"])], ledger(fees=[fee, fee]), {"A": "answered"}),
        ("lost", [told("A", "2207", ["outcome_unknown", "not_processed"])], ledger(), {}),
        ("unresolved", [told("A", "2207", ["outcome_unknown"])], ledger(), {"A": "in_doubt"}),
        ("unresolved", [told("A", "1101", ["unreachable"])], ledger(), {}),
        ("unresolved", [], ledger(), {"B": "sending"}),
    ]
    for key, said, book, outbox in cases:
        found = crash.compare(said, book, outbox)
        assert found[key], (key, said, book, outbox)
    ordering_cases = [
        # a refusal naming a later request, another person's, one already answered, or one that was sent after all
        ([told("A", "2207", ["not_processed"], "p1", 1.0, blocker="B"), told("B", "2207", ["outcome_unknown"], "p1")]),
        ([told("B", "2207", ["outcome_unknown"], "p2"), told("A", "2207", ["not_processed"], "p1", 1.0, blocker="B")]),
        ([told("B", "1101", ["outcome_unknown"], "p1"), told("A", "2207", ["not_processed"], "p1", 1.0, blocker="B")]),
        ([told("B", "2207", ["answered"], "p1", 0, 0.5), told("A", "2207", ["not_processed"], "p1", 1.0, blocker="B")]),
    ]
    for said in ordering_cases:
        assert crash.compare(said, ledger(), {})["ordering_false"], said
    blocked = [told("B", "2207", ["outcome_unknown"], "p1", 0, 2.0), told("A", "2207", ["not_processed"], "p1", 1.0)]
    blocked[1].blocker = "B"
    sent = ledger(messages=[{"msgid": "A", "infno": "2207"}])
    assert crash.compare(blocked, sent, {})["ordering_false"] == ["A refused as not sent, but it reached the platform"]
    assert not crash.compare(blocked, ledger(), {})["ordering_false"]  # true: B was still in doubt when A was sent
    reused = ledger(messages=[{"msgid": "G1", "infno": "2601"}, {"msgid": "G1", "infno": "9001"}])
    assert crash.compare([], reused, {})["reused"] == ["G1 ['2601', '9001']"]
    # and what is right is not counted: a reversed settlement told reversed, a booked one told answered
    right = [told("A", "2207", ["outcome_unknown", "reversed"]), told("B", "2207", ["unreachable", "answered"])]
    right.append(told("C", "2204", ["answered"]))  # one upload of two fee lines
    lines = [{"msgid": "C", "feedetl_sn": "1"}, {"msgid": "C", "feedetl_sn": "2"}]
    book = ledger(settlements=[{"msgid": "A", "state": "reversed"}, {"msgid": "B", "state": "cancelled"}], fees=lines)
    assert not any(crash.compare(right, book, {"A": "reversed", "B": "answered", "C": "answered"}).values())
