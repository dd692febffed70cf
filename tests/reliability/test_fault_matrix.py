"""Issue #11, the upstream fault matrix: every simulator fault × one transaction of each class, each cell through
a real gateway against a real simulator, checked against the simulator's ledger. The contract is the table
EXPECTED in faultmatrix.py (one row per cell); `python bench/faults.py` prints the same matrix with timings."""

from __future__ import annotations

import pytest
from faultmatrix import EXPECTED, FAULTS, TXS, Expect, differences, fault_named, run_cell, tx_named, violations

from gateway.platform.catalogue import national


def test_the_table_has_one_row_per_cell() -> None:
    cells = [(e.fault, e.tx) for e in EXPECTED]
    assert sorted(cells) == sorted((f.name, t.name) for f in FAULTS for t in TXS)
    assert len(set(cells)) == len(cells)


def test_each_column_is_the_class_the_catalogue_gives() -> None:
    catalogue = national()
    for tx in TXS:
        info = catalogue.classify(tx.infno)
        assert (info.tx_class.value, info.reversible) == (tx.tx_class, tx.reversible), tx


@pytest.mark.parametrize("row", EXPECTED, ids=[f"{e.fault}-{tx_named(e.tx).infno}" for e in EXPECTED])
async def test_cell(row: Expect) -> None:
    tx = tx_named(row.tx)
    obs = await run_cell(fault_named(row.fault), tx)
    assert violations(obs, tx) == [], f"{row.fault} × {row.tx}: {obs}"
    assert differences(obs, row) == [], f"{row.fault} × {row.tx}: {obs}"
