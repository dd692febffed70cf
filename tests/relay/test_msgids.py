"""Gateway-minted msgids are unique across its senders, restarts and nodes (#20: sign-in, 冲正, queries and
reconciliation each had a counter of their own, and 31 ids reached the platform under two infnos)."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from gateway.platform.msgids import MsgidMaker

CODE = "H44030000001"
FROZEN = 1_790_000_000.0  # every id below is minted "in the same second"


def frozen() -> float:
    return FROZEN


def test_two_senders_in_one_second_never_share_an_id() -> None:
    # The old code: one maker per sender, each counting from the same start.
    assert MsgidMaker(clock=frozen).make(CODE) == MsgidMaker(clock=frozen).make(CODE)
    shared = MsgidMaker(clock=frozen)
    ids = [shared.make(CODE) for _ in range(2500)]  # more than one second's slice: later seconds are used
    assert len(set(ids)) == len(ids)
    assert all(len(i) == 30 and i.startswith(CODE) and 9000 <= int(i[-4:]) <= 9999 for i in ids)
    seconds = sorted({i[12:26] for i in ids})
    assert seconds[0] == f"{datetime.fromtimestamp(FROZEN):%Y%m%d%H%M%S}" and len(seconds) == 3


def test_an_explicit_message_time_still_gives_a_fresh_id() -> None:
    shared = MsgidMaker(clock=frozen)
    now = datetime.fromtimestamp(FROZEN)
    assert len({shared.make(CODE, now) for _ in range(1200)}) == 1200


def test_a_restart_in_the_same_second_does_not_repeat_an_id(tmp_path: Path) -> None:
    mark = tmp_path / "msgid.seq"
    first = MsgidMaker(high_water=mark, clock=frozen)
    before = [first.make(CODE) for _ in range(3)]
    restarted = MsgidMaker(high_water=mark, clock=frozen)
    after = [restarted.make(CODE) for _ in range(3)]
    assert set(before).isdisjoint(after)
    # Without the kept mark a restarted process repeats the first one's ids: the defect.
    unkept = MsgidMaker(clock=frozen)
    assert [unkept.make(CODE) for _ in range(3)] == before


MINT = "import sys; from pathlib import Path; from gateway.platform.msgids import MsgidMaker; "
MINT += "m = MsgidMaker(high_water=Path(sys.argv[1])); print(*(m.make('H44030000001') for _ in range(20)))"


def test_successive_processes_mint_disjoint_ids(tmp_path: Path) -> None:
    mark = tmp_path / "msgid.seq"
    runs = [
        subprocess.run([sys.executable, "-c", MINT, str(mark)], capture_output=True, text=True, check=True, timeout=60)
        for _ in range(3)
    ]
    ids = [i for r in runs for i in r.stdout.split()]
    assert len(ids) == 60 and len(set(ids)) == 60


def test_nodes_mint_in_their_own_slices() -> None:
    a, b = MsgidMaker(node=0, nodes=2, clock=frozen), MsgidMaker(node=1, nodes=2, clock=frozen)
    ids_a = {a.make(CODE) for _ in range(700)}
    ids_b = {b.make(CODE) for _ in range(700)}
    assert ids_a.isdisjoint(ids_b)
    assert {int(i[-4:]) for i in ids_a} <= set(range(9000, 9500))
    assert {int(i[-4:]) for i in ids_b} <= set(range(9500, 10000))
    with pytest.raises(ValueError, match="node 2 of 2"):
        MsgidMaker(node=2, nodes=2)


def test_a_damaged_mark_is_refused_not_reset(tmp_path: Path) -> None:
    mark = tmp_path / "msgid.seq"
    mark.write_text("17900\x00garbage")
    with pytest.raises(ValueError, match=r"msgid\.seq: the msgid high-water mark is damaged"):
        MsgidMaker(high_water=mark)


def test_a_mark_that_cannot_be_written_does_not_stop_minting(tmp_path: Path) -> None:
    """A full or read-only state disk must not stop a 冲正: ids go on, counted as not kept."""
    mark = tmp_path / "msgid.seq"
    (tmp_path / "msgid.seq.tmp").mkdir()  # the mark's write fails (EISDIR), even for root
    minter = MsgidMaker(high_water=mark, clock=frozen)
    assert len({minter.make(CODE) for _ in range(5)}) == 5
    assert minter.unkept == 5 and not mark.exists()
