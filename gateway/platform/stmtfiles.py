"""Reconciliation (对账) files and file transfer: what 3202 uploads through 9101 and what 9102 brings back.

The national interface moves detail lists as files: the hospital zips its settlement detail, uploads it with
9101 (文件上传; the bytes travel Base64-encoded in `fsUploadIn.in`), names the returned file_qury_no in 3202
(对明细账), and downloads the platform's result with 9102 (文件下载), which answers with the file itself
(application/octet-stream) rather than an envelope. Both lists are tab-separated UTF-8 text without a header,
one settlement per line, inside a zip holding one .txt member.

Money is Decimal throughout: a reconciliation that sums binary floats reports differences that are not there.
"""

from __future__ import annotations

import base64
import io
import json
import lzma
import zipfile
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from gateway.platform.envelope import ResponseEnvelope

UPLOAD_INFNO = "9101"
DOWNLOAD_INFNO = "9102"
CENT = Decimal("0.01")

#: the hospital's detail list (uploaded for 3202)
DETAIL_COLUMNS = ("setl_id", "mdtrt_id", "psn_no", "medfee_sumamt", "fund_pay_sumamt", "acct_pay", "refd_setl_flag")
#: the platform's result list (downloaded after 3202): every settlement it holds for the period, and its verdict
RESULT_COLUMNS = (
    "setl_id",
    "msgid",
    "mdtrt_id",
    "psn_no",
    "medfee_sumamt",
    "fund_pay_sumamt",
    "acct_pay",
    "refd_setl_flag",
    "setl_time",
    "stmt_rslt",
    "memo",
)
AMOUNTS = ("medfee_sumamt", "fund_pay_sumamt", "acct_pay")
#: stmt_rslt in the result list
VERDICTS = {"0": "一致", "1": "金额不一致", "2": "医院无此记录", "3": "平台无此记录"}
#: what zipfile raises on a damaged or unreadable archive besides BadZipFile: an encrypted member (RuntimeError),
#: an unsupported method or flag (NotImplementedError), corrupt compressed data (zlib.error, LZMAError, OSError
#: from bz2, EOFError), impossible offsets (ValueError)
_ZIP_ERRORS = (
    zipfile.BadZipFile,
    RuntimeError,
    NotImplementedError,
    zlib.error,
    lzma.LZMAError,
    OSError,
    EOFError,
    ValueError,
)


class StatementFileError(ValueError):
    """A reconciliation file that cannot be read: which file, which line, what is wrong."""


def money(value: Any) -> Decimal:
    """An amount as the platform writes it (number or string) in cents; ValueError names the bad value."""
    try:
        amount = Decimal(str(value)).quantize(CENT)
    except (InvalidOperation, ValueError):
        raise ValueError(f"not an amount: {value!r}") from None
    if not amount.is_finite():  # Decimal reads "NaN" and "Infinity", and a NaN never equals itself in a comparison
        raise ValueError(f"not an amount: {value!r}")
    return amount


@dataclass(frozen=True, order=True)
class GroupKey:
    """What 3201 totals are kept by: insurance type, clearing type, settling agency."""

    insutype: str
    clr_type: str
    setl_optins: str

    def label(self) -> str:
        return f"{self.insutype}/{self.clr_type}/{self.setl_optins}"


@dataclass(frozen=True)
class StatementLine:
    """One settlement as a reconciliation file lists it."""

    setl_id: str
    mdtrt_id: str
    psn_no: str
    medfee_sumamt: Decimal
    fund_pay_sumamt: Decimal
    acct_pay: Decimal
    refd_setl_flag: str = "0"  # "1": a refund (撤销结算) line, with negative amounts
    msgid: str = ""
    setl_time: str = ""
    stmt_rslt: str = ""
    memo: str = ""

    def amounts(self) -> dict[str, Decimal]:
        return {name: getattr(self, name) for name in AMOUNTS}


def _cell(value: Any) -> str:
    text = str(value)
    if "\t" in text or "\n" in text or "\r" in text:
        raise StatementFileError(f"a field may not hold a tab or a line break: {text!r}")
    return text


def _text(lines: Iterable[StatementLine], columns: tuple[str, ...]) -> str:
    return "".join("\t".join(_cell(getattr(line, c)) for c in columns) + "\n" for line in lines)


def _parse(text: str, columns: tuple[str, ...], name: str) -> list[StatementLine]:
    out = []
    # Lines end at \n (with an optional \r) only: splitlines() would also split at \v, \f, \x1c-\x1e, \x85,
    # \u2028 and \u2029, which _cell lets a field hold.
    for number, line in enumerate(text.split("\n"), 1):
        raw = line.removesuffix("\r")
        if not raw.strip():
            continue
        cells = raw.split("\t")
        if len(cells) != len(columns):
            raise StatementFileError(f"{name}:{number}: {len(cells)} fields, expected {len(columns)}")
        row = dict(zip(columns, cells, strict=True))
        try:
            for amount in AMOUNTS:
                row[amount] = money(row[amount])  # type: ignore[assignment]
        except ValueError as exc:
            raise StatementFileError(f"{name}:{number}: {exc}") from None
        out.append(StatementLine(**row))  # type: ignore[arg-type]
    return out


def zipped(member: str, text: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(member, text.encode("utf-8"))
    return buf.getvalue()


def unzipped(data: bytes, name: str) -> tuple[str, str]:
    """The one .txt member of a zip: (member name, text)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            members = [m for m in zf.namelist() if m.endswith(".txt")]
            if len(members) != 1:
                raise StatementFileError(f"{name}: expected one .txt file in the zip, found {len(members)}")
            raw = zf.read(members[0])
    except _ZIP_ERRORS as exc:
        raise StatementFileError(f"{name}: not a readable zip file ({exc.__class__.__name__}: {exc})") from None
    try:
        return members[0], raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise StatementFileError(f"{name}: not UTF-8 text (byte {exc.start})") from None


def detail_file(member: str, lines: Iterable[StatementLine]) -> bytes:
    return zipped(member, _text(lines, DETAIL_COLUMNS))


def read_detail(data: bytes, name: str = "detail") -> list[StatementLine]:
    member, text = unzipped(data, name)
    return _parse(text, DETAIL_COLUMNS, member)


def result_file(member: str, lines: Iterable[StatementLine]) -> bytes:
    return zipped(member, _text(lines, RESULT_COLUMNS))


def read_result(data: bytes, name: str = "result") -> list[StatementLine]:
    member, text = unzipped(data, name)
    return _parse(text, RESULT_COLUMNS, member)


# -- file transfer --------------------------------------------------------------------------------------------


def upload_input(filename: str, data: bytes, fixmedins_code: str) -> dict[str, Any]:
    """9101's input."""
    return {
        "fsUploadIn": {
            "in": base64.b64encode(data).decode("ascii"),
            "filename": filename,
            "fixmedins_code": fixmedins_code,
        }
    }


def uploaded_bytes(fs_upload_in: Mapping[str, Any]) -> bytes:
    """The file of a 9101 input; ValueError says what is wrong."""
    data = fs_upload_in.get("in")
    if not isinstance(data, str) or not data:
        raise ValueError("fsUploadIn.in must be the file, Base64-encoded")
    try:
        return base64.b64decode(data, validate=True)
    except ValueError:
        raise ValueError("fsUploadIn.in is not valid Base64") from None


def download_input(file_qury_no: str, filename: str, fixmedins_code: str) -> dict[str, Any]:
    """9102's input."""
    return {"fsDownloadIn": {"file_qury_no": file_qury_no, "filename": filename, "fixmedins_code": fixmedins_code}}


def is_file_answer(content_type: str | None) -> bool:
    """A 9102 answer that is the file itself, not a JSON envelope (a refusal still comes as an envelope)."""
    kind = (content_type or "").split(";")[0].strip().lower()
    return kind in ("application/octet-stream", "application/zip", "application/x-zip-compressed")


def file_answer(data: bytes, filename: str) -> ResponseEnvelope:
    """A downloaded file as an envelope, so the relay, the outbox and the HIS see one shape of answer:
    output.file is the file Base64-encoded."""
    fields = {
        "infcode": 0,
        "err_msg": None,
        "output": {"filename": filename, "file": base64.b64encode(data).decode("ascii"), "size": len(data)},
    }
    return ResponseEnvelope(
        infcode=0, err_msg=None, fields=fields, body=json.dumps(fields, ensure_ascii=False).encode("utf-8")
    )


def downloaded_bytes(output: Any) -> bytes:
    if not isinstance(output, dict) or not isinstance(output.get("file"), str):
        raise TypeError("the 9102 answer carries no file")
    return base64.b64decode(output["file"])
