"""The simulated platform's side of reconciliation: 3201 对总账, 9101 upload, 3202 对明细账, 9102 download.

Its view of a day is the ledger (settlements not reversed by 冲正, and refund lines from 2208), with the
knobs tests and ops use to create differences the way they arise in life: a settlement the platform lost
(the hospital alone has it), one whose amounts differ, and one the hospital never recorded (a phantom).
"""

from __future__ import annotations

import itertools
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

from gateway.platform.stmtfiles import (
    AMOUNTS,
    GroupKey,
    StatementFileError,
    StatementLine,
    money,
    read_detail,
    result_file,
    uploaded_bytes,
)
from gateway.sim.errors import PlatformError, input_data, platform_date, platform_time
from gateway.sim.ledger import Ledger, Settlement
from gateway.sim.tampering import PHANTOM_INFNOS, Tampering

#: files the simulator keeps for download (a real platform keeps them for days; tests need a handful)
MAX_FILES = 64


@dataclass(frozen=True)
class FileAnswer:
    """A 9102 answer: the file itself, sent as application/octet-stream instead of an envelope."""

    filename: str
    data: bytes


def _line(s: Settlement, amounts: dict[str, Decimal] | None = None) -> StatementLine:
    values = {a: money(getattr(s, a)) for a in AMOUNTS} | (amounts or {})
    return StatementLine(
        setl_id=s.setl_id,
        mdtrt_id=s.mdtrt_id,
        psn_no=s.psn_no,
        refd_setl_flag=s.refd_setl_flag,
        msgid=s.msgid,
        setl_time=platform_time(s.booked_at),
        medfee_sumamt=values["medfee_sumamt"],
        fund_pay_sumamt=values["fund_pay_sumamt"],
        acct_pay=values["acct_pay"],
    )


class SimStatements:
    def __init__(self, ledger: Ledger, *, clock: Callable[[], float]) -> None:
        self.ledger = ledger
        self.clock = clock
        self.tampering = Tampering()
        self.files: OrderedDict[str, FileAnswer] = OrderedDict()
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def handlers(self) -> dict[str, Callable[[dict[str, Any]], Any]]:
        return {"3201": self._total, "3202": self._detail, "9101": self._upload, "9102": self._download}

    # -- the platform's view --------------------------------------------------------------------------------

    def view(self, key: GroupKey, begin: str, end: str, scope: str = "3202") -> list[StatementLine]:
        """Every line the platform's `scope` statement reconciles for `key` between two dates (inclusive)."""
        t = self.tampering
        rows: Iterable[Settlement] = [*self.ledger.settlements, *self.ledger.refunds, *t.phantoms]
        seen = (seen for s in rows if s.state != "reversed" and (seen := t.seen(s, scope)) is not None)
        return [
            _line(s, t.amounts(s.setl_id, scope))
            for s in seen
            if GroupKey(s.insutype, s.clr_type, s.setl_optins) == key and begin <= platform_date(s.booked_at) <= end
        ]

    def lose(self, setl_id: str, only: str | None = None) -> None:
        self.known(setl_id)
        self.tampering.scope(setl_id, only)
        self.tampering.lost.add(setl_id)

    def alter(self, setl_id: str, changes: dict[str, Any], only: str | None = None) -> None:
        """What the platform reports instead for a line (amounts, setl_time, group fields, person)."""
        self.known(setl_id)
        fields = Tampering.fields(changes)
        self.tampering.scope(setl_id, only)
        self.tampering.altered[setl_id] = self.tampering.altered.get(setl_id, {}) | fields

    def phantom(self, spec: dict[str, Any]) -> Settlement:
        """A line only the platform has, of any settlement or refund infno (booked now, or at `booked_at`);
        amounts not given are split 60/20/20 (a refund's negative)."""
        infno = str(spec.get("infno") or "2207")
        if infno not in PHANTOM_INFNOS:
            raise ValueError(f"a phantom is one of {', '.join(PHANTOM_INFNOS)}, got {infno!r}")
        sign = -1 if PHANTOM_INFNOS[infno] == "1" else 1
        total = abs(float(money(spec.get("medfee_sumamt", "100.00"))))
        fund = round(total * 0.6, 2)
        acct = round(total * 0.2, 2)
        given = {a: sign * abs(float(money(spec[a]))) for a in AMOUNTS if a in spec and a != "medfee_sumamt"}
        setl = Settlement(
            setl_id=f"P{next(self._ids):023d}",
            msgid=str(spec.get("msgid") or f"PHANTOM{next(self._ids):023d}"),
            infno=infno,
            psn_no=str(spec.get("psn_no") or "44000000000000000099"),
            mdtrt_id=str(spec.get("mdtrt_id") or f"M{next(self._ids):023d}"),
            chrg_bchno="",
            medfee_sumamt=sign * total,
            fund_pay_sumamt=given.get("fund_pay_sumamt", sign * fund),
            acct_pay=given.get("acct_pay", sign * acct),
            psn_cash_pay=given.get("psn_cash_pay", sign * round(total - fund - acct, 2)),
            insutype=str(spec.get("insutype") or "310"),
            booked_at=float(spec.get("booked_at") or self.clock()),
            clr_type=str(spec.get("clr_type") or "11"),
            setl_optins=str(spec.get("setl_optins") or "440300"),
            refd_setl_flag=PHANTOM_INFNOS[infno],
        )
        self.tampering.scope(setl.setl_id, spec.get("only"))
        self.tampering.phantoms.append(setl)
        return setl

    def known(self, setl_id: str) -> None:
        rows = [*self.ledger.settlements, *self.ledger.refunds, *self.tampering.phantoms]
        if not any(s.setl_id == setl_id for s in rows):
            raise ValueError(f"no settlement {setl_id} in the ledger")

    # -- transactions ---------------------------------------------------------------------------------------

    _data = staticmethod(input_data)

    @staticmethod
    def _period(data: dict[str, Any]) -> tuple[str, str]:
        begin, end = str(data["stmt_begndate"])[:10], str(data["stmt_enddate"])[:10]
        if begin > end:
            raise PlatformError("对账开始日期不能晚于结束日期")
        return begin, end

    @staticmethod
    def _amounts(data: dict[str, Any], *names: str) -> dict[str, Decimal]:
        try:
            return {n: money(data[n]) for n in names if data.get(n) not in (None, "")}
        except ValueError:
            raise PlatformError("对账金额格式不正确") from None

    def _total(self, req: dict[str, Any]) -> Any:
        data = self._data(
            req,
            "insutype",
            "clr_type",
            "setl_optins",
            "stmt_begndate",
            "stmt_enddate",
            "medfee_sumamt",
            "fund_pay_sumamt",
            "fixmedins_setl_cnt",
        )
        key = GroupKey(str(data["insutype"]), str(data["clr_type"]), str(data["setl_optins"]))
        lines = self.view(key, *self._period(data), scope="3201")
        theirs = self._amounts(data, *AMOUNTS)
        ours = {a: sum((getattr(line, a) for line in lines), Decimal("0.00")) for a in theirs}
        try:
            count = int(data["fixmedins_setl_cnt"])
        except (TypeError, ValueError):
            raise PlatformError("输入参数[fixmedins_setl_cnt]格式不正确") from None
        same = ours == theirs and count == len(lines)
        return {
            "stmtinfo": {
                "setl_optins": key.setl_optins,
                "stmt_rslt": "0" if same else "1",
                "stmt_rslt_dscr": "对账一致"
                if same
                else f"对账不平：平台{len(lines)}笔 医疗费总额{ours.get('medfee_sumamt')}，"
                f"医院{count}笔 医疗费总额{theirs.get('medfee_sumamt')}",
            }
        }

    def store(self, filename: str, data: bytes) -> str:
        with self._lock:
            file_qury_no = f"F{int(self.clock()):010d}{next(self._ids):010d}"
            self.files[file_qury_no] = FileAnswer(filename, data)
            while len(self.files) > MAX_FILES:
                self.files.popitem(last=False)
        return file_qury_no

    def _upload(self, req: dict[str, Any]) -> Any:
        fs = req["input"].get("fsUploadIn")
        if not isinstance(fs, dict) or not fs.get("filename"):
            raise PlatformError("输入参数[fsUploadIn.filename]不能为空")
        try:
            data = uploaded_bytes(fs)
        except ValueError as exc:
            raise PlatformError(f"文件内容格式不正确：{exc}") from None
        name = str(fs["filename"])
        return {"file_qury_no": self.store(name, data), "filename": name, "dld_endtime": "2099-12-31 23:59:59"}

    def _detail(self, req: dict[str, Any]) -> Any:
        data = self._data(
            req, "setl_optins", "clr_type", "file_qury_no", "stmt_begndate", "stmt_enddate", "fixmedins_setl_cnt"
        )
        uploaded = self.files.get(str(data["file_qury_no"]))
        if uploaded is None:
            raise PlatformError(f"文件[{data['file_qury_no']}]不存在，请先上传")
        try:
            hospital = read_detail(uploaded.data, uploaded.filename)
        except StatementFileError as exc:
            raise PlatformError(f"明细文件格式不正确：{exc}") from None
        if int(data["fixmedins_setl_cnt"]) != len(hospital):
            raise PlatformError(f"明细笔数{len(hospital)}与汇总笔数{data['fixmedins_setl_cnt']}不符")
        key = GroupKey(str(data.get("insutype") or ""), str(data["clr_type"]), str(data["setl_optins"]))
        begin, end = self._period(data)
        if key.insutype:
            platform = self.view(key, begin, end)
        else:  # 3202 without insutype: every insurance type of the clearing class
            insutypes = {s.insutype for s in [*self.ledger.settlements, *self.ledger.refunds, *self.tampering.phantoms]}
            platform = [line for t in sorted(insutypes) for line in self.view(replace(key, insutype=t), begin, end)]
        theirs = {line.setl_id: line for line in hospital}
        result = []
        for line in platform:
            mine = theirs.pop(line.setl_id, None)
            if mine is None:
                result.append(replace(line, stmt_rslt="2", memo="医院无此记录"))
            elif mine.amounts() != line.amounts():
                result.append(replace(line, stmt_rslt="1", memo="金额不一致"))
            else:
                result.append(replace(line, stmt_rslt="0", memo="一致"))
        result += [replace(line, stmt_rslt="3", memo="平台无此记录") for line in theirs.values()]
        name = f"stmt_result_{data['setl_optins']}_{begin}.zip"
        file_qury_no = self.store(name, result_file(name.replace(".zip", ".txt"), result))
        return {"fileinfo": {"file_qury_no": file_qury_no, "filename": name, "dld_endtime": "2099-12-31 23:59:59"}}

    def _download(self, req: dict[str, Any]) -> Any:
        fs = req["input"].get("fsDownloadIn")
        if not isinstance(fs, dict) or not fs.get("file_qury_no"):
            raise PlatformError("输入参数[fsDownloadIn.file_qury_no]不能为空")
        found = self.files.get(str(fs["file_qury_no"]))
        if found is None:
            raise PlatformError(f"文件[{fs['file_qury_no']}]不存在或已过期")
        return found

    def snapshot(self) -> dict[str, Any]:
        t = self.tampering
        return {
            "lost": sorted(t.lost),
            "altered": {k: {a: str(v) for a, v in amounts.items()} for k, amounts in t.altered.items()},
            "phantoms": [s.setl_id for s in t.phantoms],
            "only": dict(t.only),
            "files": list(self.files),
        }
