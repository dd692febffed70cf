"""Reconciliation files under hypothesis: what detail_file/result_file write, read_detail/read_result read back
line for line; any other bytes (a damaged zip, a zip of the wrong text) give a StatementFileError, and money()
takes finite amounts only."""

from __future__ import annotations

import contextlib
import io
import zipfile
from decimal import Decimal

from hypothesis import example, given, settings
from hypothesis import strategies as st

from gateway.platform.stmtfiles import (
    DETAIL_COLUMNS,
    RESULT_COLUMNS,
    StatementFileError,
    StatementLine,
    detail_file,
    downloaded_bytes,
    file_answer,
    money,
    read_detail,
    read_result,
    result_file,
    upload_input,
    uploaded_bytes,
    zipped,
)

from conftest import fuzz_examples

# Any text a field may hold: no tab and no line break of the file's own (\n, \r), but every other separator
# str.splitlines() knows (\v, \f, \x1c-\x1e, \x85, \u2028, \u2029), which a field may well contain.
cells = st.text(
    st.characters(exclude_characters="\t\n\r", exclude_categories=("Cs",)) | st.sampled_from("\v\f\x1c\x85\u2028"),
    max_size=12,
)
amounts = st.decimals(min_value=-(10**12), max_value=10**12, places=2, allow_nan=False, allow_infinity=False)
lines = st.builds(
    StatementLine,
    setl_id=cells,
    mdtrt_id=cells,
    psn_no=cells,
    medfee_sumamt=amounts,
    fund_pay_sumamt=amounts,
    acct_pay=amounts,
    refd_setl_flag=cells,
    msgid=cells,
    setl_time=cells,
    stmt_rslt=cells,
    memo=cells,
)


def _detail_only(line: StatementLine) -> StatementLine:
    """The line as a detail file carries it: the result-only fields take their defaults."""
    return StatementLine(**{c: getattr(line, c) for c in DETAIL_COLUMNS})


def _nonblank(line: StatementLine) -> bool:
    # A line whose every field is whitespace is indistinguishable from a blank line, which readers skip.
    return any(str(getattr(line, c)).strip() for c in RESULT_COLUMNS)


@settings(max_examples=fuzz_examples(200))
@given(st.lists(lines, max_size=5), st.sampled_from(["d.txt", "明细.txt", "a/b.txt"]))
@example([StatementLine("S\x85", "M\u2028", "P\x0c", Decimal("1.00"), Decimal("0.50"), Decimal("-0.01"))], "d.txt")
def test_what_is_written_reads_back(written: list[StatementLine], member: str) -> None:
    assert read_detail(detail_file(member, written)) == [_detail_only(w) for w in written]
    assert read_result(result_file(member, written)) == [w for w in written if _nonblank(w)]


zip_members = st.lists(
    st.tuples(st.sampled_from(["d.txt", "e.txt", "d.csv", "d.TXT", "dir/"]), st.binary(max_size=100)),
    max_size=3,
    unique_by=lambda member: member[0],
)


@st.composite
def damaged_zips(draw: st.DrawFn) -> bytes:
    """A real zip (deflated, stored, bzip2 or lzma), then a few bytes changed and perhaps cut short."""
    method = draw(st.sampled_from([zipfile.ZIP_DEFLATED, zipfile.ZIP_STORED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA]))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as zf:
        for name, data in draw(zip_members):
            zf.writestr(name, data)
    raw = bytearray(buf.getvalue())
    for pos, value in draw(st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=3)):
        raw[pos % len(raw)] = value
    if draw(st.booleans()):
        del raw[draw(st.integers(0, len(raw))) :]
    return bytes(raw)


texts = st.lists(
    st.lists(st.sampled_from(["1", "0.005", "-2.50", "NaN", "sNaN", "-Infinity", "1E+30", "x", "", " 3 "]) | cells).map(
        "\t".join
    ),
    max_size=4,
).map("\n".join)


@settings(max_examples=fuzz_examples(300))
@given(st.binary(max_size=200) | damaged_zips() | texts.map(lambda t: zipped("d.txt", t)))
@example(zipped("d.txt", "S\tM\tP\tNaN\t1\t1\t0\n"))
def test_any_bytes_read_or_raise_statement_file_error(data: bytes) -> None:
    for read, columns in ((read_detail, DETAIL_COLUMNS), (read_result, RESULT_COLUMNS)):
        try:
            got = read(data)
        except StatementFileError as err:
            assert str(err)
            continue
        for line in got:
            assert all(getattr(line, a).is_finite() for a in ("medfee_sumamt", "fund_pay_sumamt", "acct_pay"))
            assert all(getattr(line, c) == getattr(line, c) for c in columns)


@settings(max_examples=fuzz_examples(200))
@given(st.text(max_size=20) | st.integers() | st.floats() | st.decimals())
@example("NaN")
@example("-Infinity")
def test_money_is_finite_cents_or_value_error(value: object) -> None:
    try:
        amount = money(value)
    except ValueError as err:
        assert "not an amount" in str(err)
        return
    assert amount.is_finite() and amount == amount.quantize(Decimal("0.01"))


@settings(max_examples=fuzz_examples(100))
@given(
    st.binary(min_size=1, max_size=300), st.text(max_size=10), st.sampled_from(["", "x", "AAAA", "A===", "ÿÿ", None, 7])
)
def test_file_transfer_encodings_round_trip_and_refuse_cleanly(data: bytes, filename: str, junk: object) -> None:
    # A file is never empty (the smallest zip is 22 bytes): 9101 refuses an empty `in`, so min_size=1.
    assert uploaded_bytes(upload_input(filename, data, "H44030000001")["fsUploadIn"]) == data
    assert downloaded_bytes(file_answer(data, filename).output) == data
    try:
        uploaded_bytes({"in": junk})
    except ValueError as err:
        assert "fsUploadIn.in" in str(err)
    with contextlib.suppress(TypeError, ValueError):  # what the reconciliation run catches
        downloaded_bytes({"file": junk})
