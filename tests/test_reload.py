"""SIGHUP reload on a real daemon process: a bad file is refused with its position and changes nothing; a good
one applies the live settings and names those that wait for a restart."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

from test_systemd import NotifySocket

from gateway.audit.verify import verify
from gateway.http1.unix_client import request
from gateway.sim.server import Simulator

from conftest import PLATFORM_PATH, example, fresh


def config_text(tmp: Path, sim: Simulator, *, body_limit: int = 65536, admin_port: int = 19182) -> str:
    assert sim.addresses is not None
    host, port = sim.addresses.platform
    return (
        f"development: true\nstate_dir: {tmp}/state\nruntime_dir: {tmp}/run\nadmin: {{port: {admin_port}}}\n"
        f"api:\n  limits: {{max_body_bytes: {body_limit}}}\n"
        f"upstreams: [{{name: sim, host: {host}, port: {port}, transport: tcp}}]\n"
    )


async def metric(port: int, name: str) -> float | None:
    body = (await request("GET", "/metrics", host="127.0.0.1", port=port)).body.decode()
    return next((float(ln.rsplit(" ", 1)[1]) for ln in body.splitlines() if ln.startswith(name)), None)


async def run_daemon(cfg: Path, notify: NotifySocket) -> asyncio.subprocess.Process:
    """`ybgate run` as a real process telling systemd's notify socket its state; JSON log on stdout."""
    return await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "gateway", "run", "--config", str(cfg)),
        env=os.environ | {"NOTIFY_SOCKET": str(notify.path)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )


async def test_sighup_refuses_bad_file_and_applies_good_one(sim: Simulator, short_tmp: Path) -> None:
    cfg = short_tmp / "ybgate.yaml"
    cfg.write_text(config_text(short_tmp, sim))
    notify = NotifySocket(short_tmp / "notify.sock")
    proc = await run_daemon(cfg, notify)
    sock = str(short_tmp / "run/api.sock")
    big = json.dumps(example("9001_signin_request.json") | {"padding": "x" * 5000}).encode()
    try:
        await notify.until("READY=1")
        assert (await request("POST", PLATFORM_PATH, big, unix_socket=sock)).status == 200

        # A wrong type on line 3: refused, the running configuration stays.
        good = cfg.read_text()
        cfg.write_text(good.replace("admin: {port: 19182}", "admin: {port: many}"))
        proc.send_signal(signal.SIGHUP)
        assert (await notify.until("RELOADING=1")).startswith("RELOADING=1")
        status = await notify.until("READY=1")
        assert "reload refused" in status
        assert (await request("POST", PLATFORM_PATH, big, unix_socket=sock)).status == 200
        assert await metric(19182, 'ybgate_config_reloads_total{result="refused"}') == 1.0

        # A good file: the body limit applies at once; the admin port waits for a restart and says so.
        cfg.write_text(config_text(short_tmp, sim, body_limit=4096, admin_port=19183))
        proc.send_signal(signal.SIGHUP)
        status = await notify.until("READY=1")
        assert "reloaded; restart to apply admin" in status
        reply = await request("POST", PLATFORM_PATH, big, unix_socket=sock)
        # no policy client: the default platform-shaped refusal, the kind in the header
        assert reply.status == 200 and reply.headers.get("x-ybgate-error") == "body_too_large"
        assert await metric(19182, 'ybgate_config_reloads_total{result="applied"}') == 1.0
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = await asyncio.wait_for(proc.communicate(), 15)
    log = [json.loads(line) for line in out.decode().splitlines() if line.startswith("{")]
    refused = next(e for e in log if e["event"] == "reload_refused")
    assert refused["problems"][0].startswith(f"{cfg}:4:") and "admin.port" in refused["problems"][0]
    assert any(e["event"] == "reloaded" and e["needs_restart"] == ["admin"] for e in log)


async def test_sighup_applies_audit_settings_and_names_recon_for_restart(sim: Simulator, short_tmp: Path) -> None:
    """audit and recon were in neither the live nor the restart list: a reload said "reloaded" and kept the old
    values of both. Now audit's size and cadence apply at once (a new file past rotate_bytes, a checkpoint
    declaring the new cadence) and a recon change is named as waiting for a restart."""
    cfg = short_tmp / "ybgate.yaml"
    cfg.write_text(config_text(short_tmp, sim, admin_port=19184))
    notify = NotifySocket(short_tmp / "notify.sock")
    proc = await run_daemon(cfg, notify)
    sock = str(short_tmp / "run/api.sock")
    audit = short_tmp / "state/audit"
    try:
        await notify.until("READY=1")
        cfg.write_text(
            config_text(short_tmp, sim, admin_port=19184)
            + "audit: {rotate_bytes: 4096, checkpoint_every: 7}\nrecon: {cutoff: '03:30'}\n"
        )
        proc.send_signal(signal.SIGHUP)
        status = await notify.until("READY=1")
        assert "reloaded; restart to apply recon" in status
        for _ in range(12):
            body = json.dumps(fresh("9001_signin_request.json")).encode()
            assert (await request("POST", PLATFORM_PATH, body, unix_socket=sock)).status == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = await asyncio.wait_for(proc.communicate(), 15)
    log = [json.loads(line) for line in out.decode().splitlines() if line.startswith("{")]
    assert any(e["event"] == "reloaded" and e["needs_restart"] == ["recon"] for e in log)
    files = sorted(audit.glob("audit-*.jsonl"))
    assert len(files) >= 2, "rotate_bytes: 4096 did not apply: 12 outcomes still in one file"
    entries = [json.loads(raw) for f in files for raw in f.read_bytes().splitlines()]
    declared = [e["every"] for e in entries if e["kind"] == "checkpoint"]
    assert declared[0] == 7, f"the first checkpoint declares {declared[0]}, not the new cadence"
    # the 12 outcomes after it were held to the new cadence: a checkpoint after every 7 at most
    assert len(declared) >= 3 and verify(files).ok
