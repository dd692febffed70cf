"""What the HIS is told for a failed row follows its reason (states.Reason), not the words of its outcome."""

from __future__ import annotations

import dataclasses

import pytest

from gateway.errors import UpstreamTimeout
from gateway.platform.catalogue import TxClass
from gateway.relay.outcomes import NotProcessed, told
from gateway.relay.schema import Row
from gateway.relay.states import Reason, RowState

FAILED = Row(
    msgid="H44030000001202612040800010001",
    infno="1101",
    tx_class=TxClass.SAFE,
    psn_no=None,
    state=RowState.FAILED,
    attempts=1,
    created=1.0,
    updated=2.0,
    deadline=None,
    upstream=None,
    body_digest=b"\0",
    request=b"{}",
    response=None,
    outcome="read timed out",
    reason=Reason.NO_ANSWER,
)


def test_a_query_with_no_answer_may_be_asked_again_whatever_its_words() -> None:
    with pytest.raises(UpstreamTimeout):
        told(FAILED, resolving=False)


@pytest.mark.parametrize("reason", [r for r in Reason if r is not Reason.NO_ANSWER])
def test_every_other_reason_is_not_processed_even_in_the_words_of_a_timeout(reason: Reason) -> None:
    row = dataclasses.replace(FAILED, reason=reason, outcome="no answer in time (safe to ask again with a new msgid)")
    with pytest.raises(NotProcessed):
        told(row, resolving=False)
