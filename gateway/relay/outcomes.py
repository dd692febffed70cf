"""Final outcomes the gateway itself determines, each with its wire meaning for the HIS."""

from __future__ import annotations

from gateway.errors import GatewayError


class NotProcessed(GatewayError):
    """Definitely not processed by the platform (never sent, or the platform says it never took effect).
    The HIS may send the transaction again, with a new msgid."""

    http_status = 502
    kind = "not_processed"


class Reversed(GatewayError):
    """The request's outcome was unknown and the gateway undid it with 冲正 (2601): nothing is charged.
    Answered like a platform refusal (HTTP 200, infcode -1) because it is a definite business outcome."""

    http_status = 200
    kind = "reversed"


class OutcomeUnknown(GatewayError):
    """Sent, no answer, and not resolved yet. The gateway keeps resolving it; the HIS must not resend —
    asking again with the same msgid returns the final state once there is one."""

    http_status = 504
    kind = "outcome_unknown"


class BookedWithoutAnswer(GatewayError):
    """The platform booked the transaction (confirmed by ops after checking with the platform), but its answer
    never reached the gateway. The HIS must not send it again; the details are the platform's to query."""

    http_status = 200
    kind = "booked_no_answer"


class NothingToResolve(GatewayError):
    """Ops asked to resolve a msgid that is unknown, already final, or has no automatic resolution."""

    http_status = 409
    kind = "nothing_to_resolve"
