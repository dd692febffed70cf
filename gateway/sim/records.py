"""The rest of the catalogue: 1xxx person and catalogue downloads, 2001, 25xx 备案, 3xxx management (but
3201/3202), 4xxx clinical uploads, the 5xxx queries not answered elsewhere.

Plausible rather than deep: a download answers a file the HIS can fetch with 9102, an upload answers
the serial the platform gives, and a 撤销 of a record the platform never took is refused as the platform
refuses it. Records are kept per family so a 撤销 or a query sees what was filed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gateway.platform.catalogue import national
from gateway.sim.errors import PlatformError, platform_time

#: 备案/登记 families: filing infno -> (its 撤销, the serial field both name)
FILINGS: dict[str, tuple[str, str]] = {
    "2501": ("2502", "trt_dcla_detl_sn"),
    "2501A": ("2502", "trt_dcla_detl_sn"),
    "2503": ("2504", "trt_dcla_detl_sn"),
    "2505": ("2506", "trt_dcla_detl_sn"),
    "2507": ("2508", "trt_dcla_detl_sn"),
    "3203": ("3204", "clr_appy_evt_id"),
    "3203A": ("3204", "clr_appy_evt_id"),
    "3301": ("3302", "fixmedins_hilist_id"),
    "3401": ("3403", "hosp_dept_codg"),
}
#: queries of filed records: query infno -> the filings it lists
LISTS: dict[str, tuple[str, ...]] = {
    "5101": ("3401",),
    "5301": ("2503",),
    "5302": ("2505",),
    "5304": ("2501", "2501A"),
    "3205A": ("3203", "3203A"),
}


class SimRecords:
    def __init__(
        self,
        *,
        region: str,
        clock: Callable[[], float],
        ids: Callable[[], int],
        store: Callable[[str, bytes], str],
        zipped: Callable[[str, str], bytes],
    ) -> None:
        self.region = region
        self.clock = clock
        self._ids = ids
        self._store = store
        self._zipped = zipped
        self.filed: dict[str, dict[str, dict[str, Any]]] = {}  # filing infno -> serial -> record

    def handlers(self, taken: set[str]) -> dict[str, Callable[[dict[str, Any]], Any]]:
        """A handler for every catalogued infno that `taken` (the specialised handlers) does not answer."""
        out: dict[str, Callable[[dict[str, Any]], Any]] = {}
        cancels = {cancel: serial for cancel, serial in FILINGS.values()}
        for infno in national().entries:
            if infno in taken:
                continue
            if infno in FILINGS:
                out[infno] = self._file
            elif infno in cancels:
                out[infno] = self._withdraw
            elif infno in LISTS:
                out[infno] = self._list
            elif infno.startswith("13") or infno in ("1901",):
                out[infno] = self._download if infno != "1312" else self._page
            elif infno.startswith("1"):
                out[infno] = self._institution if infno == "1201" else self._page
            elif infno.startswith(("3", "4")) and infno not in ("4103", "3101"):
                out[infno] = self._upload
            else:
                out[infno] = self._page
        return out

    def _payload(self, req: dict[str, Any]) -> dict[str, Any]:
        """The one object a management upload carries, whatever its key (data, deptinfo, mdtrtinfo …)."""
        inp = req["input"]
        for value in inp.values():
            if isinstance(value, dict):
                return value
            if isinstance(value, list) and value and isinstance(value[0], dict):
                return value[0]
        raise PlatformError("输入参数[input]不能为空")

    def _file(self, req: dict[str, Any]) -> Any:
        infno = str(req["infno"])
        serial_field = FILINGS[infno][1]
        record = self._payload(req)
        serial = str(record.get(serial_field) or f"{self.region}{self._ids():016d}")
        family = self.filed.setdefault(infno, {})
        if serial in family and family[serial].get("state") == "filed":
            raise PlatformError(f"记录[{serial}]已存在，不能重复上传")
        family[serial] = record | {serial_field: serial, "state": "filed", "msgid": req["msgid"]}
        return {"result": {serial_field: serial}}

    def _withdraw(self, req: dict[str, Any]) -> Any:
        infno = str(req["infno"])
        families = [f for f, (c, _) in FILINGS.items() if c == infno]
        serial_field = FILINGS[families[0]][1]
        serial = str(self._payload(req).get(serial_field) or "")
        if not serial:
            raise PlatformError(f"输入参数[{serial_field}]不能为空")
        record = next((self.filed.get(f, {}).get(serial) for f in families if serial in self.filed.get(f, {})), None)
        if record is None or record["state"] != "filed":
            raise PlatformError(f"记录[{serial}]不存在或已撤销")
        record["state"] = "withdrawn"
        return {}

    def _list(self, req: dict[str, Any]) -> Any:
        rows = [
            {k: v for k, v in r.items() if k not in ("state", "msgid")}
            for f in LISTS[str(req["infno"])]
            for r in self.filed.get(f, {}).values()
            if r["state"] == "filed"
        ]
        return {"data": rows}

    def _download(self, req: dict[str, Any]) -> Any:
        """目录下载: the platform answers a file to fetch with 9102, not the catalogue itself."""
        infno = str(req["infno"])
        name = f"{infno}_{self._ids():08d}.zip"
        tx = national().entries[infno]
        file_qury_no = self._store(name, self._zipped(name.replace(".zip", ".txt"), f"{tx.name}\n"))
        return {"file_qury_no": file_qury_no, "filename": name, "dld_endtime": "2099-12-31 23:59:59"}

    def _page(self, req: dict[str, Any]) -> Any:
        data = req["input"].get("data") if isinstance(req["input"].get("data"), dict) else {}
        return {"data": [], "recordCounts": 0, "pageNum": int(data.get("page_num") or 1), "pages": 0}

    def _institution(self, req: dict[str, Any]) -> Any:
        return {
            "medinsinfo": [
                {
                    "fixmedins_code": req.get("fixmedins_code"),
                    "fixmedins_name": req.get("fixmedins_name"),
                    "fixmedins_type": "1",
                    "hosp_lv": "11",
                }
            ]
        }

    def _upload(self, req: dict[str, Any]) -> Any:
        self._payload(req)
        return {"result": {"retRslt": "1", "upld_time": platform_time(self.clock()), "sn": f"{self._ids():016d}"}}
