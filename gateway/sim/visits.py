"""Visits and fee lines: 门诊 挂号 / 就诊信息 / 费用明细 (2201-2205), 住院 办理 (2401-2405), 费用明细 (2301/2302)
and the queries that read them (5201, 5204, 5303).

Stateful where the HIS relies on state: the mdtrt_id a 挂号 or 入院办理 opens is what later uploads and
settlements name, and a fee line cancelled by 2205/2302 is gone from 5204.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gateway.sim.errors import PlatformError, input_data
from gateway.sim.ledger import Ledger


class SimVisits:
    def __init__(self, ledger: Ledger, *, region: str, ids: Callable[[], int]) -> None:
        self.ledger = ledger
        self.region = region
        self._ids = ids

    def handlers(self) -> dict[str, Callable[[dict[str, Any]], Any]]:
        return {
            "2201": self._register,
            "2202": self._unregister,
            "2203": self._visit_info,
            "2203A": self._visit_info,
            "2204": self._upload_fees,
            "2205": self._cancel_fees,
            "2301": self._upload_fees,
            "2302": self._cancel_fees,
            "2401": self._admit,
            "2402": self._discharge,
            "2403": self._change,
            "2404": self._unadmit,
            "2405": self._undischarge,
            "5201": self._visit_query,
            "5204": self._fee_query,
            "5303": self._in_hospital,
        }

    def visit(self, mdtrt_id: str, psn_no: str) -> dict[str, Any]:
        found = next((v for v in self.ledger.visits if v["mdtrt_id"] == mdtrt_id and v["psn_no"] == psn_no), None)
        if found is None:
            raise PlatformError(f"就诊信息[{mdtrt_id}]不存在")
        return found

    def _open(self, req: dict[str, Any], data: dict[str, Any], kind: str, number: str) -> dict[str, Any]:
        mdtrt_id = f"{self.region}{self._ids():020d}"
        visit = {"mdtrt_id": mdtrt_id, "psn_no": data["psn_no"], "ipt_otp_no": data[number]}
        extra = {"msgid": req["msgid"], "insutype": data.get("insutype") or "310", "kind": kind, "state": "open"}
        self.ledger.keep(self.ledger.visits, [visit | extra])
        return visit

    def _register(self, req: dict[str, Any]) -> Any:
        """门诊挂号: opens a visit (and may charge a registration fee); 2202 cancels it."""
        data = input_data(req, "psn_no", "insutype", "ipt_otp_no")
        return {"data": self._open(req, data, "outpatient", "ipt_otp_no")}

    def _unregister(self, req: dict[str, Any]) -> Any:
        data = input_data(req, "psn_no", "mdtrt_id", "ipt_otp_no")
        visit = self.visit(str(data["mdtrt_id"]), str(data["psn_no"]))
        if visit["state"] != "open":
            raise PlatformError(f"就诊信息[{visit['mdtrt_id']}]已撤销，不能重复撤销")
        visit["state"], visit["undone_by"] = "cancelled", req["msgid"]
        return {}

    def _visit_info(self, req: dict[str, Any]) -> Any:
        """门诊就诊信息上传 (2203/2203A): diagnoses for an open visit."""
        mdtrtinfo = req["input"].get("mdtrtinfo")
        if not isinstance(mdtrtinfo, dict) or not mdtrtinfo.get("mdtrt_id") or not mdtrtinfo.get("psn_no"):
            raise PlatformError("输入参数[mdtrtinfo.mdtrt_id]不能为空")
        visit = self.visit(str(mdtrtinfo["mdtrt_id"]), str(mdtrtinfo["psn_no"]))
        visit["diseinfo"] = list(req["input"].get("diseinfo") or [])
        return {}

    def _upload_fees(self, req: dict[str, Any]) -> Any:
        """费用明细上传 (check-first: a blind second copy may duplicate fee lines); answers the lines it took."""
        lines = req["input"].get("feedetail")
        if not isinstance(lines, list) or not lines or not all(isinstance(x, dict) for x in lines):
            raise PlatformError("输入参数[feedetail]不能为空")
        missing = next((x for x in lines if not x.get("feedetl_sn")), None)
        if missing is not None:
            raise PlatformError("输入参数[feedetl_sn]不能为空")
        self.ledger.keep(self.ledger.fees, [x | {"msgid": req["msgid"], "mdtrt_id": x.get("mdtrt_id")} for x in lines])
        return {
            "result": [
                {"feedetl_sn": x["feedetl_sn"], "det_item_fee_sumamt": x.get("det_item_fee_sumamt")} for x in lines
            ]
        }

    def _cancel_fees(self, req: dict[str, Any]) -> Any:
        """费用明细撤销: one line by feedetl_sn, or every line of the visit with "0000" (the spec's "all")."""
        data = input_data(req, "mdtrt_id", "psn_no", "feedetl_sn")
        sn = str(data["feedetl_sn"])
        lines = [
            f
            for f in self.ledger.fees
            if f["mdtrt_id"] == data["mdtrt_id"] and not f.get("cancelled_by") and sn in ("0000", str(f["feedetl_sn"]))
        ]
        if not lines:
            raise PlatformError(f"费用明细[{sn}]不存在或已撤销")
        for f in lines:
            f["cancelled_by"] = req["msgid"]
        return {}

    def _admit(self, req: dict[str, Any]) -> Any:
        data = req["input"].get("mdtrtinfo")
        if not isinstance(data, dict):
            raise PlatformError("输入参数[mdtrtinfo]不能为空")
        for name in ("psn_no", "insutype", "ipt_no"):
            if not data.get(name):
                raise PlatformError(f"输入参数[{name}]不能为空")
        if self._stays(str(data["psn_no"])):
            raise PlatformError("参保人已有在院记录，不能重复办理入院")
        return {"result": self._open(req, data, "inpatient", "ipt_no")}

    def _inpatient(self, data: dict[str, Any], *states: str) -> dict[str, Any]:
        visit = self.visit(str(data.get("mdtrt_id") or ""), str(data.get("psn_no") or ""))
        if visit["kind"] != "inpatient" or visit["state"] not in states:
            raise PlatformError(f"住院信息[{visit['mdtrt_id']}]状态不允许此操作")
        return visit

    def _discharge(self, req: dict[str, Any]) -> Any:
        visit = self._inpatient(req["input"].get("dscginfo") or {}, "open")
        visit["state"] = "discharged"
        return {}

    def _change(self, req: dict[str, Any]) -> Any:
        self._inpatient(req["input"].get("adminfo") or {}, "open")
        return {}

    def _unadmit(self, req: dict[str, Any]) -> Any:
        visit = self._inpatient(input_data(req, "mdtrt_id", "psn_no"), "open")
        visit["state"], visit["undone_by"] = "cancelled", req["msgid"]
        return {}

    def _undischarge(self, req: dict[str, Any]) -> Any:
        visit = self._inpatient(input_data(req, "mdtrt_id", "psn_no"), "discharged")
        visit["state"] = "open"
        return {}

    def _visit_query(self, req: dict[str, Any]) -> Any:
        """就诊信息查询: the visits a person has (what resolves a 挂号 whose answer was lost)."""
        data = input_data(req, "psn_no")
        keep = ("mdtrt_id", "psn_no", "ipt_otp_no", "insutype")
        return {"mdtrtinfo": [{k: v[k] for k in keep} for v in self.ledger.visits if v["psn_no"] == data["psn_no"]]}

    def _fee_query(self, req: dict[str, Any]) -> Any:
        """费用明细查询: the fee lines held for a visit (what resolves an upload whose answer was lost)."""
        data = input_data(req, "mdtrt_id")
        keep = ("feedetl_sn", "mdtrt_id", "psn_no", "med_list_codg", "det_item_fee_sumamt")
        held = [f for f in self.ledger.fees if f["mdtrt_id"] == data["mdtrt_id"] and not f.get("cancelled_by")]
        return {"feedetail": [{k: f.get(k) for k in keep} for f in held]}

    def _in_hospital(self, req: dict[str, Any]) -> Any:
        data = input_data(req, "psn_no")
        keep = ("mdtrt_id", "psn_no", "ipt_otp_no", "insutype")
        return {"data": [{k: v[k] for k in keep} for v in self._stays(str(data["psn_no"]))]}

    def _stays(self, psn_no: str) -> list[dict[str, Any]]:
        """A person's open hospital stays (the platform allows one)."""
        return [
            v
            for v in self.ledger.visits
            if v["psn_no"] == psn_no and v.get("kind") == "inpatient" and v["state"] == "open"
        ]
