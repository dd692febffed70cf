"""How the gateway's own failures reach a HIS: the shape, the advice to the cashier, the machine-readable kind.

Real HIS HTTP stacks (Java HttpURLConnection, .NET HttpWebRequest, the bureau's sample client) throw on a status
of 400 or more without reading the body, so the cashier would see "(502)" and nothing else. The platform answers
business failures as HTTP 200 with infcode -1, and every HIS already shows err_msg from such an answer; the
gateway does the same by default. A client that wants the kind in the HTTP status (`answer: http_status` in its
policy entry) gets it there. Either way the body carries `gateway_error` and the X-Ybgate-Error header the kind.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any, Literal

from gateway.errors import GatewayError
from gateway.http1 import Response
from gateway.http1.messages import attachment
from gateway.platform.envelope import error_body
from gateway.platform.stmtfiles import DOWNLOAD_INFNO

AnswerMode = Literal["platform", "http_status"]
DEFAULT_MODE: AnswerMode = "platform"
ERROR_HEADER = "X-Ybgate-Error"

_FIX_REQUEST = "本次请求未发送到医保平台，未产生费用。HIS报文有误，请联系HIS厂商按以下说明修正"
_NOT_SENT = "本次请求未发送到医保平台，未产生费用。"
_UPSTREAM = "医保平台暂时无法访问，请稍后重试；如持续出现请通知信息科"

#: what the cashier should do, per kind; the detail that follows it is for the HIS developer and ops
ADVICE: dict[str, str] = {
    **dict.fromkeys(
        (
            "bad_envelope",
            "bad_json",
            "duplicate_key",
            "bad_encoding",
            "bad_charset",
            "bad_http",
            "bad_url",
            "bad_timeout",
            "bad_path",
            "bad_method",
            "bad_request",
            "bad_multipart",
            "body_too_large",
            "headers_too_large",
        ),
        _FIX_REQUEST,
    ),
    "header_timeout": _NOT_SENT + "HIS发送请求过慢被中断，请重试",
    "body_timeout": _NOT_SENT + "HIS发送请求过慢被中断，请重试",
    "policy_denied": _NOT_SENT + "前置机策略不允许本终端调用该交易，请联系信息科",
    "maintenance": _NOT_SENT + "前置机处于维护时段，请稍后再试",
    "rate_limited": _NOT_SENT + "请求过于频繁，请稍后再试",
    "msgid_conflict": "该报文ID已用于另一笔不同的交易，本次未发送、未产生费用。请HIS生成新的报文ID后重新发起",
    "outbox_unavailable": "前置机暂时无法保存请求，本次交易未受理、未扣费。请稍后重试，并通知信息科",
    "not_processed": "医保平台未处理本次交易，未扣费。可使用新的报文ID重新发起",
    "reversed": "交易结果曾经不明，前置机已冲正撤销，未扣费。请使用新的报文ID重新发起",
    "outcome_unknown": "交易已发往医保平台但结果未知，请勿重新收费！请稍后用相同报文ID再次发送以查询结果",
    "booked_no_answer": "医保平台已记账但应答丢失，请勿重新收费！请在医保平台查询该笔交易",
    "upstream_timeout": "医保平台未及时应答，本交易为查询类，可直接重试",
    "upstream": _UPSTREAM,
    "upstream_unreachable": _UPSTREAM,
    "upstream_bad_http": _UPSTREAM,
    "untrusted_answer": _UPSTREAM,
}
_INTERNAL = "前置机内部错误，请通知信息科"


def advice(kind: str) -> str:
    return ADVICE.get(kind, _INTERNAL)


def cashier_message(err: GatewayError) -> str:
    """err_msg: what to do first, in Chinese, then the detail. The relay's outcomes and the policy's refusals
    open with their own Chinese instruction (it depends on the transaction's state); the rest get the table's."""
    if err.message[:1] >= "\u2e80":  # CJK radicals and above: the message already speaks to the cashier
        return err.message
    return f"{advice(err.kind)}。{err.message}"


def file_response(infno: str, fields: Mapping[str, Any]) -> Response | None:
    """A 9102 (文件下载) answer as the platform sends it: the file's bytes as application/octet-stream, which HIS
    code writes straight to disk. The relay keeps the file Base64-encoded in an envelope (output.file) so that the
    outbox holds one shape of answer; a failure stays JSON (None here)."""
    out = fields.get("output")
    if infno != DOWNLOAD_INFNO or fields.get("infcode") not in (0, "0") or not isinstance(out, dict):
        return None
    data, name = out.get("file"), out.get("filename")
    if not isinstance(data, str) or not isinstance(name, str):
        return None
    return Response(
        200, base64.b64decode(data), "application/octet-stream", (("Content-Disposition", attachment(name)),)
    )


def failure_response(err: GatewayError, mode: AnswerMode, charset: str = "utf-8") -> Response:
    """The answer for a failure the gateway itself determined, in the client's mode and charset."""
    body = error_body(cashier_message(err), infcode=err.infcode, kind=err.kind)
    status = err.http_status if mode == "http_status" else 200
    headers = ((ERROR_HEADER, err.kind),)
    if charset == "utf-8":
        return Response(status, body, headers=headers)
    # Answer a GBK-speaking HIS in GBK: it decodes what it sent.
    return Response(status, body.decode("utf-8").encode(charset), "application/json; charset=GBK", headers)
