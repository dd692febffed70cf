"""The life of one request in the outbox: an explicit state enum and the table of legal moves."""

from __future__ import annotations

import enum


class RowState(enum.Enum):
    ACCEPTED = "accepted"  # on disk, acknowledged to the HIS as accepted, not yet sent
    SENDING = "sending"  # an attempt is on its way; a crash here means the platform may have it
    IN_DOUBT = "in_doubt"  # sent, no answer: the platform may or may not have processed it
    ANSWERED = "answered"  # the platform's answer is stored; final
    REVERSED = "reversed"  # an in-doubt transaction was undone by 冲正; final
    FAILED = "failed"  # definitely not processed (never sent, or the platform says it never took effect); final
    CONFIRMED = "confirmed"  # the platform booked it (ops checked), but its answer never arrived; final

    @property
    def final(self) -> bool:
        return self in (RowState.ANSWERED, RowState.REVERSED, RowState.FAILED, RowState.CONFIRMED)


MOVES: dict[RowState, frozenset[RowState]] = {
    RowState.ACCEPTED: frozenset({RowState.SENDING, RowState.FAILED}),
    # back to ACCEPTED when the attempt failed before anything was sent (connection refused)
    RowState.SENDING: frozenset({RowState.ANSWERED, RowState.ACCEPTED, RowState.IN_DOUBT, RowState.FAILED}),
    # IN_DOUBT to itself: a query found nothing decisive, and what it found is noted for ops
    RowState.IN_DOUBT: frozenset(
        {RowState.IN_DOUBT, RowState.SENDING, RowState.ANSWERED, RowState.REVERSED, RowState.FAILED, RowState.CONFIRMED}
    ),
    RowState.ANSWERED: frozenset(),
    RowState.REVERSED: frozenset(),
    RowState.FAILED: frozenset(),
    RowState.CONFIRMED: frozenset(),
}

UNFINISHED = (RowState.ACCEPTED, RowState.SENDING, RowState.IN_DOUBT)
#: the final states' values, as the outbox stores them
FINAL_VALUES = tuple(s.value for s in RowState if s.final)


class Reason(enum.Enum):
    """Why a row ended FAILED, kept beside the free-text outcome: what the HIS is told follows from it (a query
    with no answer may simply be asked again; anything else was not processed), and ops and the crash harness
    count by it. Every FAILED row has one; no other row has any."""

    NOT_SENT = "not_sent"  # it never left the gateway (refused connection, open breaker, a restart came first)
    ORDER = "order"  # not sent: the same person's earlier transaction was still unresolved at its deadline
    NO_ANSWER = "no_answer"  # a query whose answer did not come in time: safe to ask again with a new msgid
    NOT_BOOKED = "not_booked"  # the platform shows it never booked it (2601 found nothing, or a check query)
    OPS = "ops"  # ops checked with the platform and found it not booked
    UNRECORDED = "unrecorded"  # failed in an outbox written before reasons were kept, in words that name none


def check_reason(to: RowState, reason: Reason | None) -> None:
    """A move to FAILED names its reason, and only such a move does (a defect otherwise, like an illegal move)."""
    if (to is RowState.FAILED) != (reason is not None):
        raise ValueError(f"a move to {to.value} {'needs' if to is RowState.FAILED else 'takes no'} reason")


class IllegalMove(RuntimeError):
    """A bug, not an operational condition: the relay asked for a move the table does not allow."""
