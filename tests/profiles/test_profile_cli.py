"""`ybgate profile …` as real processes: show, check, and a simulator process enforcing a profile that a
gateway relays to."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path

from profilekit import APP_ID, PAASID, SM4_HEX, TIF_SECRET, write_private

from gateway.app.daemon import Daemon
from gateway.app.demo import DEMO_CONFIG
from gateway.config import load_config_text
from gateway.crypto.testpki import generate_test_pki

from conftest import Gateway, fresh, ybgate_output, ybgate_process


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_profile_list_and_show() -> None:
    code, out, _ = await ybgate_output("profile", "list")
    assert code == 0 and [line.split()[0] for line in out.splitlines()] == [
        "national",
        "plain",
        "tif",
        "sm2sm4",
        "gbk",
        "hunan",
        "jiangxi",
    ]
    code, out, _ = await ybgate_output("profile", "show", "tif")
    assert code == 0 and "TIF headers" in out and "upstream needs: paasid, secrets.tif_secret" in out


async def test_profile_show_reports_positions(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nsign:\n  form: pem\n")
    code, _, err = await ybgate_output("profile", "show", str(bad))
    assert code == 1 and f"{bad}:3:9: sign.form:" in err


async def test_profile_check_reads_keys_without_printing_them(short_tmp: Path) -> None:
    secret = write_private(short_tmp / "tif", TIF_SECRET.encode())
    text = DEMO_CONFIG.format(state=short_tmp, host="127.0.0.1", port=9, level="warning")
    extra = f"    profile: tif\n    paasid: {PAASID}\n    secrets:\n      tif_secret: {secret}\n"
    cfg = short_tmp / "ybgate.yaml"
    cfg.write_text(text.replace("    transport: tcp\n", "    transport: tcp\n" + extra))
    code, out, _ = await ybgate_output("profile", "check", "--config", str(cfg))
    assert code == 0 and "upstream sim: profile tif: keys ok (paasid, tif_secret)" in out
    assert TIF_SECRET not in out
    code, out, _ = await ybgate_output("check", "--config", str(cfg))
    assert code == 0 and "upstream sim (primary): tcp 127.0.0.1:9/ebus/fsi/api/hsa/hgs/{infno}  profile tif" in out
    secret.chmod(0o644)
    code, out, err = await ybgate_output("check", "--config", str(cfg))
    assert code == 1 and "upstream sim: secrets.tif_secret" in err and "chmod 600" in err
    code, out, err = await ybgate_output("profile", "check", "--config", str(cfg))
    assert code == 1 and "secrets.tif_secret" in err and "chmod 600" in err and TIF_SECRET not in err + out


async def test_gateway_through_a_profile_simulator_process(short_tmp: Path) -> None:
    """`ybgate profile sim --profile sm2sm4` in its own process; the gateway signs and encrypts, the process
    checks and answers signed and encrypted, the HIS sees plain JSON."""
    pki = generate_test_pki(short_tmp / "pki")
    keys = short_tmp / "simkeys"
    keys.mkdir(mode=0o700)
    (keys / "app_id").write_text(APP_ID)
    write_private(keys / "sm4_key", SM4_HEX.encode())
    write_private(keys / "platform_sign.key.pem", pki["server_sign.key"].read_bytes())
    (keys / "hospital_sign.crt.pem").write_bytes(pki["client_sign.crt"].read_bytes())
    gw_secrets = short_tmp / "gwsecrets"
    gw_secrets.mkdir(mode=0o700)
    sm4 = write_private(gw_secrets / "sm4_key", SM4_HEX.encode())
    port, admin = free_port(), free_port()
    proc = await ybgate_process(
        "profile", "sim", "--profile", "sm2sm4", "--keys", str(keys), "--port", str(port), "--admin-port", str(admin),
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    daemon = None
    try:
        assert proc.stdout is not None
        line = b""
        while not line.startswith(b"simulator: platform"):  # JSON log lines come first
            line = await asyncio.wait_for(proc.stdout.readline(), 30)
            assert line, "the simulator process ended before it was ready"
        text = DEMO_CONFIG.format(state=short_tmp / "gw", host="127.0.0.1", port=port, level="warning")
        extra = (
            f"    profile: sm2sm4\n    app_id: {APP_ID}\n    secrets:\n      sm4_key: {sm4}\n"
            f"      sign_key: {pki['client_sign.key']}\n      platform_cert: {pki['server_sign.crt']}\n"
        )
        config = load_config_text(text.replace("    transport: tcp\n", "    transport: tcp\n" + extra), "<cli test>")
        daemon = Daemon(config)
        await daemon.start()
        gw = Gateway(daemon, config, None)  # type: ignore[arg-type]
        signin = json.loads((await gw.post(fresh("9001_signin_request.json"))).body)
        assert int(signin["infcode"]) == 0, signin
        sign_no = signin["output"]["signinoutb"]["sign_no"]
        person = json.loads((await gw.post(fresh("1101_query_request.json", sign_no=sign_no))).body)
        assert int(person["infcode"]) == 0 and person["output"]["baseinfo"]["psn_no"]
    finally:
        if daemon is not None:
            await daemon.stop(grace=1.0)
        proc.terminate()
        await proc.wait()
