"""Replays the recorded TLCP transcripts in tests/data/tlcp record by record (test helper)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from gateway.tlcp import keyschedule
from gateway.tlcp.messages import HandshakeReader, RawHandshake
from gateway.tlcp.record import ContentType, Record, RecordLayer, protection_for
from gateway.tlcp.suites import BY_NAME, CipherSuite

DATA = Path(__file__).resolve().parent.parent / "data" / "tlcp"
PKI = DATA / "pki"
KAT_NAMES = sorted(p.name for p in DATA.iterdir() if (p / "meta.json").exists())


@dataclass
class Kat:
    name: str
    meta: dict
    suite: CipherSuite
    client_random: bytes
    server_random: bytes
    records: list[dict]
    streams: dict[str, bytes]

    @classmethod
    def load(cls, name: str) -> Kat:
        d = DATA / name
        meta = json.loads((d / "meta.json").read_text())
        records = [json.loads(line) for line in (d / "records.jsonl").read_text().splitlines() if line]
        return cls(
            name,
            meta,
            BY_NAME[meta["cipher_suite"]],
            bytes.fromhex(meta["client_random"]),
            bytes.fromhex(meta["server_random"]),
            records,
            {"c2s": (d / "c2s.bin").read_bytes(), "s2c": (d / "s2c.bin").read_bytes()},
        )

    @property
    def keylog_master(self) -> bytes | None:
        path = DATA / self.name / "keylog.txt"
        if not path.exists():
            return None
        _, cr, ms = path.read_text().split()
        assert bytes.fromhex(cr) == self.client_random
        return bytes.fromhex(ms)

    def raw_record(self, rec: dict) -> bytes:
        return self.streams[rec["dir"]][rec["offset"] : rec["offset"] + 5 + rec["length"]]


@dataclass
class Replay:
    """Everything the transcript says, decrypted with the given master secret."""

    handshake: list[tuple[str, RawHandshake]] = field(default_factory=list)
    app_data: dict[str, bytes] = field(default_factory=lambda: {"c2s": b"", "s2c": b""})
    alerts: list[tuple[str, bytes, bool]] = field(default_factory=list)
    records: int = 0


def replay(kat: Kat, master: bytes) -> Replay:
    kb = keyschedule.key_block(kat.suite, master, kat.client_random, kat.server_random)
    layers = {"c2s": RecordLayer(), "s2c": RecordLayer()}
    readers = {"c2s": HandshakeReader(), "s2c": HandshakeReader()}
    out = Replay()
    for rec in kat.records:
        direction = rec["dir"]
        layer = layers[direction]
        layer.feed(kat.raw_record(rec))
        record: Record | None = layer.next_record()
        assert record is not None and layer.pending() == 0
        out.records += 1
        if record.content_type is ContentType.change_cipher_spec:
            assert record.fragment == b"\x01"
            keys = kb.client if direction == "c2s" else kb.server
            layer.set_read_protection(protection_for(kat.suite, keys))
        elif record.content_type is ContentType.handshake:
            readers[direction].feed(record.fragment)
            while (msg := readers[direction].next_message()) is not None:
                out.handshake.append((direction, msg))
        elif record.content_type is ContentType.application_data:
            out.app_data[direction] += record.fragment
        else:
            out.alerts.append((direction, record.fragment, record.unprotected))
    return out
