"""Checkpoint anchors published retained on MQTT (a real mosquitto): a subscriber on another host that comes
later still gets the latest checkpoint's hash, and a log cut back before it fails `audit verify --anchor`
against what the subscriber kept."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from test_mqtt import Broker, broker, subscribed

from gateway.audit.anchor import Anchor
from gateway.audit.log import AuditLog, Outcome, audit_files
from gateway.crypto import SM2PrivateKey, sm3
from gateway.health.mqtt import HealthPublisher, MqttSettings

from conftest import DATA, ybgate_output

__all__ = ["broker"]  # the fixture, used by name

CERT = DATA / "crypto" / "pki" / "client_sign.crt.pem"


async def test_the_latest_checkpoint_is_retained_on_mqtt(broker: Broker, tmp_path: Path) -> None:
    pub = HealthPublisher(MqttSettings("127.0.0.1", broker.port, topic_prefix="gw", client_id="gw-a"), dict)
    await pub.start()
    try:
        await asyncio.wait_for(pub.connected.wait(), 15)
        key = SM2PrivateKey.from_pem((DATA / "crypto" / "pki" / "client_sign.key.plain.pem").read_bytes())

        def publish(anchor: Anchor) -> None:  # as the daemon wires it
            pub.retain("audit/anchor", anchor.doc())

        log = AuditLog(tmp_path / "audit", checkpoint_every=10, signer=key, anchors=[publish])
        log.open()
        for i in range(25):
            log.record([Outcome(f"M{i:029d}", "2207", "answered", "infcode 0", "sim", sm3(b"%d" % i), b"r", 1.0)])
            await asyncio.sleep(0)
        await log.close()  # its checkpoint (seq 28) is the latest
        entries = [json.loads(r) for f in audit_files(tmp_path / "audit") for r in f.read_bytes().splitlines()]
        last = entries[-1]
        assert last["kind"] == "checkpoint" and last["seq"] == 28

        async with subscribed(broker.port, "gw/audit/anchor") as sub:  # a subscriber that comes afterwards
            doc = await sub.expect("/audit/anchor", within=10, seq=28)
        assert doc["hash"] == last["hash"]
    finally:
        await pub.stop()

    kept = tmp_path / "collector.jsonl"  # what the subscriber keeps
    kept.write_text(json.dumps(doc) + "\n")
    [path] = audit_files(tmp_path / "audit")
    code, out, err = await ybgate_output("audit", "verify", str(path), "--cert", str(CERT), "--anchor", str(kept))
    assert code == 0 and "published checkpoints match" in out, err
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:22]))  # back to the second checkpoint: signatures and chain intact
    code, _, err = await ybgate_output("audit", "verify", str(path), "--cert", str(CERT), "--anchor", str(kept))
    assert code == 1 and "the log ends at seq 22 but checkpoint seq 28 was published" in err, err
