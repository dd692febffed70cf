"""`ybgate demo`: the gateway relaying to the bundled platform simulator, on a throwaway state directory.

`--once` plays a cashier's session through the real Unix socket — sign-in, person query, pre-settlement,
settlement, reversal — and then checks the simulator's ledger: the settlement must have been booked exactly
once and reversed; with a TCP listener, a LAN HIS's sign-in over it too. The exit status says whether every
step did what it should.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from gateway.api.answers import AnswerMode
from gateway.app.daemon import Daemon
from gateway.config import Config, load_config_text
from gateway.crypto import Certificate, SM2PrivateKey
from gateway.crypto.testpki import generate_test_pki
from gateway.demo_tour import PERSON, MsgIds, envelope, tour, write_config, write_samples
from gateway.http1.unix_client import request
from gateway.net.tlcp_transport import ca_names, chain_verifier
from gateway.platform.envelope import decode_response
from gateway.sim.server import SimAddresses, Simulator
from gateway.tlcp import Credentials, MemorySessionCache, TLCPConfig

PLATFORM_PATH = "/fsi/api/rsfComIfsService/callService"

DEMO_CONFIG = """\
# The embedded default: a gateway relaying to the bundled simulator on loopback.
development: true            # plain TCP to the simulator; a 前置机 uses TLCP
state_dir: {state}/state
runtime_dir: {state}/run
api:
  socket: {state}/run/api.sock
  socket_mode: 0660
  default_timeout: 10
admin:
  port: 0                    # any free port: demos and tests may run side by side
upstreams:
  - name: sim
    role: primary
    host: {host}
    port: {port}
    transport: tcp
logging:
  level: {level}
  access: {{to: stderr}}       # one line per request, among the log lines (a 前置机 sends them to the journal)
"""

POLICY_PART = """\
policy:
  paths: [{state}/policy]    # written by the demo: this user may call everything, only the simulator is reached
"""

DEMO_POLICY = """\
# The demo's access policy (default deny: only what is listed here is allowed).
groups:
  everything: ["*"]
clients:
  - name: demo-user
    unix: {{uids: [{uid}]}}
    allow: [everything]
    answer: {answer}
upstreams:
  - {{host: {host}, port: {port}}}
"""


TLCP_PART = """\
identity:                    # the throwaway test PKI the demo generates (NOT for production)
  sign_cert: {pki}/client_sign.crt.pem
  sign_key: {pki}/client_sign.key.pem
  enc_cert: {pki}/client_enc.crt.pem
  enc_key: {pki}/client_enc.key.pem
  ca_bundle: {pki}/ca.crt.pem
"""


LAN_CLIENT = """\
  - name: lan-his               # HIS workstations on the LAN call the TCP listener; allowed by source network
    tcp: {{cidrs: [{cidrs}]}}
    allow: [everything]
"""
#: where the bureau's sample front service listens, so a HIS configured for it works unchanged
DEFAULT_TCP = ("127.0.0.1", 8097)


def lan_cidrs(host: str) -> list[str]:
    """Who may call the demo's TCP listener: loopback, and the listening address's /24 when it is a LAN one."""
    cidrs = ["127.0.0.0/8"]
    address = ipaddress.ip_address(host)
    if address.version == 4 and not (address.is_loopback or address.is_unspecified):
        cidrs.append(str(ipaddress.ip_network(f"{host}/24", strict=False)))
    return cidrs


def demo_policy(
    state: Path, platform: tuple[str, int], answer: AnswerMode = "http_status", tcp: tuple[str, int] | None = None
) -> str:
    """Write the demo's policy file under `state` and return the config lines that name it."""
    (state / "policy").mkdir(parents=True, exist_ok=True)
    text = DEMO_POLICY.format(uid=os.getuid(), host=platform[0], port=platform[1], answer=answer)
    if tcp is not None:
        lan = LAN_CLIENT.format(cidrs=", ".join(lan_cidrs(tcp[0])))
        text = text.replace("upstreams:\n", lan + "upstreams:\n", 1)
    (state / "policy" / "demo.yaml").write_text(text)
    return POLICY_PART.format(state=state)


def demo_config(
    state: Path,
    platform: tuple[str, int],
    level: str = "warning",
    pki: Path | None = None,
    *,
    answer: AnswerMode = "http_status",
    tcp: tuple[str, int] | None = None,
) -> Config:
    """The embedded default. With `pki` the upstream is TLCP with mutual authentication, as on a 前置机;
    without, plain TCP under the development flag (the fast path most tests use). `answer` is the demo client's
    answer mode: `ybgate demo` shows the product's default (platform); the suite's relay and limit tests read
    each outcome from the HTTP status, so they ask for http_status (the HIS-face tests use both)."""
    text = DEMO_CONFIG.format(state=state, host=platform[0], port=platform[1], level=level) + demo_policy(
        state, platform, answer, tcp
    )
    if tcp is not None:
        listen = f"  tcp: [{{host: {tcp[0]}, port: {tcp[1]}}}]\n"
        text = text.replace("  socket_mode: 0660\n", "  socket_mode: 0660\n" + listen)
    if pki is not None:
        text = text.replace("development: true            # plain TCP to the simulator; a 前置机 uses TLCP\n", "")
        text = text.replace("    transport: tcp\n", "    transport: tlcp\n") + TLCP_PART.format(pki=pki)
    return load_config_text(text, "<embedded demo config>")


def sim_tlcp_config(pki: Path) -> TLCPConfig:
    """The simulator as the platform: server sign/enc certificates, client certificates required, and a session
    cache as Tongsuo servers keep by default (300 s), so clients may resume."""
    roots = Certificate.load_pem_chain((pki / "ca.crt.pem").read_bytes())
    creds = Credentials(
        SM2PrivateKey.from_pem((pki / "server_sign.key.pem").read_bytes()),
        Certificate.from_pem((pki / "server_sign.crt.pem").read_bytes()),
        SM2PrivateKey.from_pem((pki / "server_enc.key.pem").read_bytes()),
        Certificate.from_pem((pki / "server_enc.crt.pem").read_bytes()),
    )
    return TLCPConfig(
        credentials=creds,
        verify_peer=chain_verifier(roots),
        request_client_cert=True,
        require_client_cert=True,
        client_ca_names=ca_names(roots),
        session_cache=MemorySessionCache(time.monotonic, lifetime=300.0),
    )


@dataclass
class Step:
    name: str
    infno: str
    msgid: str
    infcode: int | None
    ms: float
    note: str
    ok: bool


class DemoRun:
    def __init__(self, socket_path: Path, admin: tuple[str, int], out: TextIO) -> None:
        self.socket_path = socket_path
        self.admin = admin
        self.out = out
        self.ids = MsgIds()
        self.steps: list[Step] = []
        self._sent: dict[str, bytes] = {}  # msgid -> the bytes sent under it

    async def call(
        self,
        name: str,
        infno: str,
        sign_no: str,
        payload: dict[str, Any],
        *,
        msgid: str | None = None,
        expect: str = "ok",
    ) -> tuple[dict[str, Any], str]:
        """One request; `expect` is "ok" (infcode 0) or the gateway_error the step should end with."""
        msgid = msgid or self.ids.next()
        # A retry resends the same bytes, as a HIS does: the envelope's inf_time is stamped once, so a retry in
        # the next second is not a different request under a used msgid.
        body = (
            self._sent.get(msgid) or json.dumps(envelope(infno, msgid, sign_no, payload), ensure_ascii=False).encode()
        )
        self._sent[msgid] = body
        started = time.perf_counter()
        reply = await request("POST", PLATFORM_PATH, body, unix_socket=str(self.socket_path))
        ms = (time.perf_counter() - started) * 1000
        try:
            answer = decode_response(reply.body)
            infcode: int | None = answer.infcode
            fields = answer.fields
        except ValueError:
            infcode, fields = None, {}
        ok = infcode == 0 and reply.status == 200 if expect == "ok" else fields.get("gateway_error") == expect
        note = fields.get("err_msg") or ""
        self.steps.append(Step(name, infno, msgid, infcode, ms, note, ok))
        self.out.write(f"  {'ok ' if ok else 'BAD'} {name:<22} infno={infno} infcode={infcode} {ms:7.1f} ms {note}\n")
        return fields, msgid

    async def cashier_session(self) -> bool:
        self.out.write("cashier session through the gateway socket:\n")
        signin, _ = await self.call(
            "sign-in", "9001", "", {"signIn": {"opter_no": "0012", "mac": "52-54-00-12-34-56", "ip": "127.0.0.1"}}
        )
        sign_no = ((signin.get("output") or {}).get("signinoutb") or {}).get("sign_no", "")
        person, _ = await self.call(
            "person query",
            "1101",
            sign_no,
            {"data": PERSON},
        )
        psn_no = ((person.get("output") or {}).get("baseinfo") or {}).get("psn_no", "")
        visit = {
            "psn_no": psn_no,
            "mdtrt_cert_type": "02",
            "mdtrt_cert_no": "440301199001011234",
            "med_type": "11",
            "medfee_sumamt": "128.50",
            "psn_setlway": "01",
            "mdtrt_id": "440000000000000000000123",
            "chrg_bchno": f"CB{int(time.time())}",
            "insutype": "310",
            "acct_used_flag": "1",
        }
        await self.call("pre-settlement", "2206", sign_no, {"data": visit})
        _settled, settle_msgid = await self.call("settlement", "2207", sign_no, {"data": visit})
        await self.call(
            "reversal (冲正)", "2601", sign_no, {"data": {"psn_no": psn_no, "omsgid": settle_msgid, "oinfno": "2207"}}
        )
        first_ok = await self.check_ledger(settle_msgid)
        return await self.lost_answer(sign_no, visit) and first_ok and all(s.ok for s in self.steps)

    async def lost_answer(self, sign_no: str, visit: dict[str, Any]) -> bool:
        """A settlement whose answer is lost on the way back: the gateway never resends it, it reverses it."""
        self.out.write("settlement whose answer is lost (the simulator books it, then drops the connection):\n")
        await request(
            "POST",
            "/_sim/faults",
            b'{"2207": {"kind": "drop_after", "times": 1}}',
            host=self.admin[0],
            port=self.admin[1],
        )
        visit = visit | {"chrg_bchno": f"CB{int(time.time())}B"}
        _, msgid = await self.call("settlement, answer lost", "2207", sign_no, {"data": visit}, expect="reversed")
        await self.call("HIS retries same msgid", "2207", sign_no, {"data": visit}, msgid=msgid, expect="reversed")
        return await self.check_ledger(msgid)

    async def lan_sign_in(self, host: str, port: int) -> bool:
        """A LAN HIS's sign-in over the TCP listener, as its workstation makes it."""
        body = json.dumps(
            envelope("9001", self.ids.next(), "", {"signIn": {"opter_no": "0012"}}), ensure_ascii=False
        ).encode()
        reply = await request("POST", PLATFORM_PATH, body, host=host, port=port)
        try:
            ok = reply.status == 200 and decode_response(reply.body).infcode == 0
        except ValueError:
            ok = False
        self.out.write(f"  {'ok ' if ok else 'BAD'} sign-in over TCP (LAN HIS) http://{host}:{port}{PLATFORM_PATH}\n")
        return ok

    async def check_ledger(self, settle_msgid: str) -> bool:
        reply = await request("GET", "/_sim/ledger", host=self.admin[0], port=self.admin[1])
        ledger = json.loads(reply.body)
        booked = [s for s in ledger["settlements"] if s["msgid"] == settle_msgid]
        states = [s["state"] for s in booked]
        ok = len(booked) == 1 and states == ["reversed"]
        self.out.write(
            f"  {'ok ' if ok else 'BAD'} simulator ledger: settlement {settle_msgid} booked "
            f"{len(booked)} time(s), state {states}\n"
        )
        return ok


async def run_demo(
    *,
    once: bool,
    out: TextIO,
    state_dir: Path | None = None,
    level: str = "warning",
    tcp: tuple[str, int] | None = DEFAULT_TCP,
) -> int:
    from gateway.logging import configure

    configure(level=level, fmt="console")
    owned = state_dir is None
    state = state_dir or Path(tempfile.mkdtemp(prefix="ybgate-demo-"))
    pki = state / "pki"
    generate_test_pki(pki)
    sim = Simulator()
    addrs: SimAddresses = await sim.start(tlcp=sim_tlcp_config(pki))
    config = demo_config(state, addrs.platform, level, pki=pki, answer="platform", tcp=tcp)
    daemon = Daemon(config)
    await daemon.start()
    try:
        lan = [f"http://{host}:{port}{PLATFORM_PATH}" for host, port in daemon.api_tcp_addresses]
        if once:
            run = DemoRun(config.api_socket, addrs.admin, out)
            ok = await run.cashier_session()
            for host, port in daemon.api_tcp_addresses:
                ok = await run.lan_sign_in(host, port) and ok
            out.write("demo: PASS\n" if ok else "demo: FAIL\n")
            return 0 if ok else 1
        assert daemon.admin_address is not None
        written = write_config(state, config, daemon.admin_address[1], daemon.api_tcp_addresses)
        samples = await write_samples(state, config.api_socket)
        lan_lines = "".join(
            f"  LAN HIS (TCP, policy client lan-his from {', '.join(lan_cidrs(tcp[0]))}): {url}\n"
            for url in lan
            if tcp is not None
        )
        out.write(
            f"ybgate demo: gateway on {config.api_socket}, simulator admin {addrs.admin_url}\n"
            + lan_lines
            + tour(written, daemon.admin_address, config.api_socket, lan, samples)
            + f"  ledger: curl {addrs.admin_url}ledger\n"
            f"  gateway metrics: curl http://{daemon.admin_address[0]}:{daemon.admin_address[1]}/metrics\n"
            f'  fault:  curl -X POST {addrs.admin_url}faults -d \'{{"2207": {{"kind": "drop_after"}}}}\'\n'
            "  Ctrl-C to stop.\n"
        )
        out.flush()
        await daemon.wait_for_signal()
        return 0
    finally:
        await daemon.stop(grace=2.0)
        await sim.stop()
        if owned:
            shutil.rmtree(state, ignore_errors=True)


def main_demo(once: bool, out: TextIO, level: str = "warning", tcp: tuple[str, int] | None = DEFAULT_TCP) -> int:
    return asyncio.run(run_demo(once=once, out=out, level=level, tcp=tcp))
