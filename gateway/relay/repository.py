"""The outbox as the relay sees it: a small typed interface, its answers and its refusals.

The relay (durable.py, resolution.py) and the daemon's readers (status, metrics, audit catch-up, reconciliation,
pruning) use only this. SQLite (gateway/relay/outbox.py) implements it today; a PostgreSQL backend for a pair of
前置机 implements the same calls with the same guarantees:
- every call returns only once what it wrote is durable, and a refused call (MsgidConflict, NotInDoubt,
  IllegalMove, KeyError) wrote nothing;
- accept is atomic: the msgid's uniqueness, the person's earlier unfinished work (`blockers`) and the claim of
  the first attempt are one decision, and so is "only while the original is in doubt";
- move is checked against the table of legal moves (states.MOVES) in the statement that writes it;
- decide writes only while the row is in doubt and no 冲正 of it is unfinished;
- OutboxUnavailable means nothing of the call is stored.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol, Unpack

from gateway.errors import GatewayError
from gateway.platform.catalogue import TxClass
from gateway.relay.schema import Change, Row
from gateway.relay.states import RowState


class MsgidConflict(GatewayError):
    """The same msgid arrived with a different body: one of them is a HIS bug, and neither may be guessed."""

    http_status = 409
    kind = "msgid_conflict"


class OutboxUnavailable(GatewayError):
    """The outbox cannot store the request (disk full, I/O error): it is refused, never acknowledged."""

    http_status = 503
    kind = "outbox_unavailable"


class NotInDoubt(GatewayError):
    """A resolution step found its row no longer in doubt (decided meanwhile), or an ops decision found a 冲正 of
    the row unfinished: the step is refused before anything is written."""

    http_status = 409
    kind = "not_in_doubt"


def used_before(msgid: str, infno: str) -> MsgidConflict:
    """The refusal of a msgid stored with a different body (`infno`: the stored request's)."""
    return MsgidConflict(
        f"msgid {msgid} was already used for a different request ({infno}); a new request needs a new msgid"
    )


def reversal_not_stored(original: str, state: str) -> NotInDoubt:
    return NotInDoubt(f"{original} is {state}: no 冲正 for it is stored")


def nothing_to_decide(msgid: str, state: str, outcome: str | None) -> NotInDoubt:
    return NotInDoubt(f"{msgid} is {state} meanwhile: nothing to decide ({outcome or ''})")


def reversal_unfinished(msgid: str, reversals: list[str]) -> NotInDoubt:
    """An ops decision refused while a 冲正 of the row is unfinished: that 2601 may have reversed it."""
    return NotInDoubt(
        f"{msgid}: 冲正 {', '.join(reversals)} went out and its answer was lost, so the platform may "
        "have reversed it; the gateway asks again (same omsgid) and settles it: decide after that"
    )


def reversal_client(msgid: str) -> str:
    """The `client` of a 2601 the gateway sends to undo `msgid`: how a 冲正 row names its original."""
    return f"ybgate:reversal of {msgid}"


@dataclass(frozen=True)
class Accepted:
    row: Row
    new: bool  # False: the msgid was known with the same body; row is the stored one
    blockers: tuple[str, ...] = ()  # earlier unfinished ordered msgids of the same person, oldest first


@dataclass(frozen=True)
class InDoubtItem:
    msgid: str
    infno: str
    created: float
    updated: float
    outcome: str | None


@dataclass(frozen=True)
class OutboxSummary:
    counts: dict[str, int]
    oldest_unfinished: float | None  # Unix time the oldest unfinished row was accepted
    oldest_in_doubt: float | None
    in_doubt: tuple[InDoubtItem, ...]  # oldest first, bounded


class Outbox(Protocol):
    #: told of each row that reached a final state, once it is durable (the audit log listens here)
    on_final: Callable[[list[Row]], None] | None

    @property
    def write_failures(self) -> int: ...

    #: whether this gateway may send now: on a database shared by a pair, only while its lease surely holds (a
    #: gateway whose lease lapsed may have had its rows claimed by the other); a local file is always its own
    @property
    def may_send(self) -> bool: ...

    #: `async with outbox.alone("recon") as mine:` — whether this gateway runs `job` now: on a shared database only
    #: one gateway of the pair holds a job's lock at a time (the others skip their turn); a local file: always
    def alone(self, job: str) -> AbstractAsyncContextManager[bool]: ...

    async def start(self) -> None: ...
    async def stop(self) -> None: ...

    # -- the relay's operations ------------------------------------------------------------------------------

    async def accept(
        self,
        *,
        msgid: str,
        infno: str,
        tx_class: TxClass,
        psn_no: str | None,
        body: bytes,
        deadline: float | None,
        send: bool = False,
        client: str | None = None,
        only_while_in_doubt: str | None = None,
        completed: tuple[str, ...] = (),  # the envelope fields the gateway filled in, kept for the audit
    ) -> Accepted: ...

    async def move(self, msgid: str, to: RowState, **fields: Unpack[Change]) -> Row: ...
    async def decide(self, msgid: str, to: RowState, outcome: str) -> Row: ...
    async def get(self, msgid: str) -> Row | None: ...
    async def holds(self, msgid: str) -> bool: ...
    #: the unfinished rows this gateway is to settle at start: all of a local file's; on a shared database its
    #: own and those of gateways without a live lease, claimed by it — never the running other gateway's
    async def unfinished(self) -> list[Row]: ...
    #: unfinished rows of gateways that hold no live lease any more, claimed by this one (none in a local file)
    async def orphans(self) -> list[Row]: ...
    async def in_doubt_for(self, psn_no: str, *, before: str) -> list[Row]: ...
    async def reversals_of(self, msgid: str) -> list[Row]: ...

    # -- views for ops, monitoring, the audit log and reconciliation; housekeeping ----------------------------

    async def recent(self, limit: int = 50, state: RowState | None = None) -> list[Row]: ...
    async def summary(self, in_doubt_limit: int = 20) -> OutboxSummary: ...
    async def counts(self) -> dict[str, int]: ...
    #: the final rows this gateway settled at or after a time (its audit chain's catch-up after a crash); on a
    #: shared database, only those its node settled: the other gateway's outcomes are in the other's chain
    async def finished_since(self, since: float) -> list[Row]: ...
    async def between(self, start: float, end: float, infnos: frozenset[str]) -> list[Row]: ...
    async def prune(self, older_than: float, batch: int = 500) -> int: ...
