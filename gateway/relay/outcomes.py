"""Final outcomes the gateway itself determines, each with its wire meaning for the HIS, and what the HIS is told
for a stored row."""

from __future__ import annotations

from gateway.errors import GatewayError, UpstreamTimeout
from gateway.platform.envelope import decode_response
from gateway.relay.answer import RelayAnswer
from gateway.relay.schema import Row
from gateway.relay.states import Reason, RowState


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


def told(row: Row, *, resolving: bool) -> RelayAnswer:
    """What the HIS hears for a stored row: the platform's answer, or the outcome the gateway determined (raised,
    with its wire meaning). `resolving`: a 冲正 or query for the row is under way."""
    if row.state is RowState.ANSWERED:
        assert row.response is not None
        return RelayAnswer(decode_response(row.response), row.upstream or "", None)
    if row.state is RowState.REVERSED:
        raise Reversed(
            f"结算结果未知，已自动冲正，未扣费；可使用新的msgid重新办理 (outcome was unknown, reversed by "
            f"2601, nothing charged; retry with a new msgid). {row.outcome or ''}".strip()
        )
    if row.state is RowState.FAILED and row.reason is Reason.NO_ANSWER:
        raise UpstreamTimeout(f"平台未在时限内应答，可用新的msgid重新查询 ({row.outcome})")
    if row.state is RowState.FAILED:
        raise NotProcessed(
            f"未被医保平台处理，可使用新的msgid重新办理 (not processed; retry with a new msgid): "
            f"{row.outcome or ''}".strip()
        )
    if row.state is RowState.CONFIRMED:
        raise BookedWithoutAnswer(
            "平台已办理（经查询或运维核实），但网关未收到平台应答；请勿重复提交，结果请向平台查询 "
            "(booked, confirmed by query or by ops; the platform's answer never arrived; do not resend; "
            f"query the platform for details). "
            f"{row.outcome or ''}".strip()
        )
    if resolving:
        raise OutcomeUnknown(
            f"结果未知，网关正在冲正或查询核实，请勿重复提交；稍后用同一msgid查询 (outcome unknown, being "
            "resolved by 冲正 or query; "
            f"do not resend; ask again with the same msgid). {row.outcome or ''}".strip()
        )
    raise OutcomeUnknown(
        f"结果未知，请先查询平台再决定是否重发 (outcome unknown; query the platform before resending; ops: "
        f"ybgate outbox resolve {row.msgid}). {row.outcome or ''}".strip()
    )
