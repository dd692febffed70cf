"""What `ybgate demo` leaves beside its state for a person trying it: the configuration it runs with, so that
`ybgate status`, `ybgate outbox …` and the other ops commands can be pointed at the running demo, and one sample
request per kind of transaction (query, pre-settlement, settlement, upload, download), signed in and ready to
post with curl.

Each sample has its own msgid: posting one twice shows the outbox at work (the same answer, sent once).
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from gateway.config import Config, TcpListen, load_config_text
from gateway.http1.unix_client import request
from gateway.platform.envelope import decode_response
from gateway.platform.stmtfiles import download_input, upload_input

FIXMEDINS_CODE = "H44030000001"
PLATFORM_PATH = "/fsi/api/rsfComIfsService/callService"
FILE_UPLOAD_PATH = "/fsi/api/fileupload/upload"
FILE_DOWNLOAD_PATH = "/fsi/api/fileupload/download"
PERSON = {
    "mdtrt_cert_type": "02",
    "mdtrt_cert_no": "440301199001011234",
    "card_sn": "",
    "begntime": "",
    "psn_cert_type": "01",
    "certno": "440301199001011234",
    "psn_name": "李四",
}


class MsgIds:
    """msgid = fixmedins_code (12) + yyyyMMddHHmmss (14) + 4-digit sequence, as the interface specifies."""

    def __init__(self, code: str = FIXMEDINS_CODE, first: int = 1) -> None:
        self.code = code
        self._seq = itertools.count(first)

    def next(self) -> str:
        return f"{self.code}{datetime.now().strftime('%Y%m%d%H%M%S')}{next(self._seq) % 10000:04d}"


def envelope(infno: str, msgid: str, sign_no: str, payload: dict[str, Any]) -> dict[str, Any]:
    return {
        "infno": infno,
        "msgid": msgid,
        "mdtrtarea_admvs": "440300",
        "insuplc_admdvs": "440300",
        "recer_sys_code": "FSI",
        "dev_no": "",
        "dev_safe_info": "",
        "cainfo": "",
        "signtype": "",
        "infver": "V1.0",
        "opter_type": "1",
        "opter": "0012",
        "opter_name": "张三",
        "inf_time": datetime.now().strftime("%Y-%m-%d %H:%M:%S"),
        "fixmedins_code": FIXMEDINS_CODE,
        "fixmedins_name": "示例市第一人民医院",
        "sign_no": sign_no,
        "input": payload,
    }


@dataclass(frozen=True)
class Sample:
    what: str
    file: Path
    path: str  # where a HIS posts it


def write_config(state: Path, config: Config, admin_port: int, tcp: list[tuple[str, int]]) -> Path:
    """The running demo's configuration as a file, with the ports the demo chose (0 in the embedded default)
    made the ones it listens on, so that commands reading the file reach it. Settings left at their defaults are
    left out: the file shows what the demo sets."""
    api = config.api.model_copy(update={"tcp": [TcpListen(host=h, port=p) for h, p in tcp]})
    running = config.model_copy(update={"admin": config.admin.model_copy(update={"port": admin_port}), "api": api})
    doc = running.model_dump(mode="json", exclude_defaults=True)
    text = "# ybgate demo: the configuration it runs with (written at start, removed with the demo)\n" + yaml.safe_dump(
        doc, allow_unicode=True, sort_keys=False
    )
    load_config_text(text, "demo ybgate.yaml")  # what is written must load
    path = state / "ybgate.yaml"
    path.write_text(text, encoding="utf-8")
    return path


async def write_samples(state: Path, socket: Path) -> list[Sample]:
    """Sign in and upload a file through the demo's socket (the download sample needs the upload's file number),
    then write one request per kind of transaction under state/requests."""
    folder = state / "requests"
    folder.mkdir(exist_ok=True)
    # sequence numbers from 5000: a HIS numbering its own from 1 in the same second does not meet these, nor the
    # gateway's own (9000-9999, gateway.platform.msgids)
    msgid = MsgIds(first=5000).next

    def encode(doc: dict[str, Any]) -> bytes:
        return json.dumps(doc, ensure_ascii=False, indent=1).encode("utf-8")

    def save(name: str, doc: dict[str, Any]) -> Path:
        path = folder / name
        path.write_bytes(encode(doc))
        return path

    async def post(doc: dict[str, Any], path: str = PLATFORM_PATH) -> dict[str, Any]:
        # the bytes the sample file holds: posting the file again is then the same request, answered from the outbox
        reply = await request("POST", path, encode(doc), unix_socket=str(socket))
        return decode_response(reply.body).fields

    signin = envelope(
        "9001", msgid(), "", {"signIn": {"opter_no": "0012", "mac": "52-54-00-12-34-56", "ip": "127.0.0.1"}}
    )
    answered = await post(signin)
    sign_no = str(((answered.get("output") or {}).get("signinoutb") or {}).get("sign_no", ""))
    person = await post(envelope("1101", msgid(), sign_no, {"data": PERSON}))
    psn_no = str(((person.get("output") or {}).get("baseinfo") or {}).get("psn_no", ""))
    visit = {
        "psn_no": psn_no,
        "mdtrt_cert_type": "02",
        "mdtrt_cert_no": PERSON["mdtrt_cert_no"],
        "med_type": "11",
        "medfee_sumamt": "128.50",
        "psn_setlway": "01",
        "mdtrt_id": "440000000000000000000123",
        "chrg_bchno": "CB" + msgid()[-10:],
        "insutype": "310",
        "acct_used_flag": "1",
    }
    content = "ybgate demo: a file through the 专网\n".encode()
    upload = envelope("9101", msgid(), sign_no, upload_input("demo.txt", content, str(signin["fixmedins_code"])))
    uploaded = await post(upload, FILE_UPLOAD_PATH)
    file_no = str((uploaded.get("output") or {}).get("file_qury_no", ""))
    download = download_input(file_no, "demo.txt", str(signin["fixmedins_code"]))
    return [
        Sample("sign-in", save("9001_signin.json", signin), PLATFORM_PATH),
        Sample("query", save("1101_query.json", envelope("1101", msgid(), sign_no, {"data": PERSON})), PLATFORM_PATH),
        Sample(
            "pre-settlement",
            save("2206_presettle.json", envelope("2206", msgid(), sign_no, {"data": visit})),
            PLATFORM_PATH,
        ),
        Sample(
            "settlement", save("2207_settle.json", envelope("2207", msgid(), sign_no, {"data": visit})), PLATFORM_PATH
        ),
        Sample("upload", save("9101_upload.json", upload), FILE_UPLOAD_PATH),
        Sample(
            "download (the file's bytes)",
            save("9102_download.json", envelope("9102", msgid(), sign_no, download)),
            FILE_DOWNLOAD_PATH,
        ),
    ]


def tour(config: Path, admin: tuple[str, int], socket: Path, lan: list[str], samples: list[Sample]) -> str:
    """The lines the demo prints: how to look at it and how to call it."""
    settle = next(s for s in samples if s.file.name.startswith("2207"))
    base = lan[0].removesuffix(PLATFORM_PATH) if lan else None
    lines = [
        f"  status page: http://{admin[0]}:{admin[1]}/",
        f"  its configuration: {config}",
        f"    ybgate status --config {config}",
        f"    ybgate outbox list --config {config}",
        f"  sample requests in {config.parent / 'requests'} (signed in; post one twice: the same answer, sent once):",
    ]
    lines += [f"    {s.what:<28} {s.file.name:<22} POST {s.path}" for s in samples]
    where = f"{base}{settle.path}" if base else f"--unix-socket {socket} http://localhost{settle.path}"
    lines.append(f"  try:  curl -sS -H 'Content-Type: application/json' --data-binary @{settle.file} {where}")
    return "\n".join(lines) + "\n"
