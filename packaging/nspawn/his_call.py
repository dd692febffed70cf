"""Lab only (packaging/test-nspawn): one HIS call over the Unix socket, as the HIS's own HTTP stack sends it.

Prints the HTTP status and the answer's infcode and gateway_error on one line; exit 2 when the socket refuses the
caller (the socket's permissions), so the check can tell that apart from a gateway answer.
"""

import http.client
import json
import socket
import sys
import time

SOCKET = "/run/ybgate/api.sock"
PATH = "/fsi/api/rsfComIfsService/callService"


class UnixConnection(http.client.HTTPConnection):
    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(SOCKET)


def envelope(infno: str, tag: str, payload: dict, sign_no: str = "") -> dict:
    return {
        "infno": infno,
        "msgid": "H44030000001" + time.strftime("%Y%m%d%H%M%S") + tag.rjust(4, "0"),
        "mdtrtarea_admvs": "440300",
        "insuplc_admdvs": "440300",
        "recer_sys_code": "FSI",
        "infver": "V1.0",
        "opter_type": "1",
        "opter": "0012",
        "opter_name": "lab",
        "fixmedins_code": "H44030000001",
        "fixmedins_name": "lab",
        "inf_time": time.strftime("%Y-%m-%d %H:%M:%S"),
        "sign_no": sign_no,
        "input": payload,
    }


def post(body: dict) -> tuple[int, dict]:
    conn = UnixConnection("localhost", timeout=60)
    conn.request("POST", PATH, json.dumps(body, ensure_ascii=False).encode(), {"Content-Type": "application/json"})
    resp = conn.getresponse()
    return resp.status, json.loads(resp.read() or b"{}")


def main() -> int:
    """A cashier's sign-in (9001), then a person query (1101) under its sign_no."""
    tag = sys.argv[1]
    try:
        status, answer = post(envelope("9001", tag + "s", {"signIn": {"opter_no": "0012", "mac": "", "ip": ""}}))
    except PermissionError:
        print("refused by the socket: permission denied")
        return 2
    sign_no = str(((answer.get("output") or {}).get("signinoutb") or {}).get("sign_no", ""))
    if status == 200 and sign_no:
        person = {
            "mdtrt_cert_type": "02",
            "mdtrt_cert_no": "440301199001011234",
            "psn_cert_type": "01",
            "certno": "440301199001011234",
            "psn_name": "lab",
        }
        status, answer = post(envelope("1101", tag + "q", {"data": person}, sign_no))
    print(status, answer.get("infcode"), answer.get("gateway_error", "-"), str(answer.get("err_msg") or "")[:80])
    return 0 if status == 200 and str(answer.get("infcode")) == "0" else 1


if __name__ == "__main__":
    sys.exit(main())
