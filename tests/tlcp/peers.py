"""Credentials from the recorded sessions' PKI and an in-memory pipe between two sans-IO connections."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from gateway.crypto import Certificate, SM2PrivateKey
from gateway.tlcp.alerts import AlertDescription, TLCPAlert
from gateway.tlcp.client import ClientConnection
from gateway.tlcp.config import Credentials, TLCPConfig
from gateway.tlcp.connection import Connection
from gateway.tlcp.events import Event
from gateway.tlcp.server import ServerConnection

from .kat import PKI


def cert(name: str) -> Certificate:
    return Certificate.from_pem((PKI / f"{name}.crt.pem").read_bytes())


def key(name: str) -> SM2PrivateKey:
    return SM2PrivateKey.from_pem((PKI / f"{name}.key.plain.pem").read_bytes())


def credentials(side: str) -> Credentials:
    return Credentials(key(f"{side}_sign"), cert(f"{side}_sign"), key(f"{side}_enc"), cert(f"{side}_enc"))


CA = cert("ca")


def verify_with_ca(certs: Sequence[Certificate]) -> None:
    """Test verifier: the end-entity certificates must be issued by the test CA."""
    for c in certs:
        if c.issuer != CA.subject:
            raise TLCPAlert(AlertDescription.unknown_ca, c.subject)


SERVER = TLCPConfig(credentials=credentials("server"), verify_peer=verify_with_ca)
CLIENT = TLCPConfig(credentials=None, verify_peer=verify_with_ca)


def client_with_certs(**changes: object) -> TLCPConfig:
    return replace(CLIENT, credentials=credentials("client"), **changes)  # type: ignore[arg-type]


def pump(client: Connection, server: Connection, *, chunk: int | None = None) -> tuple[list[Event], list[Event]]:
    """Shuttle bytes until both sides are quiet; ``chunk`` feeds that many bytes at a time."""
    client_events: list[Event] = []
    server_events: list[Event] = []
    while True:
        moved = False
        for src, dst, sink in ((client, server, server_events), (server, client, client_events)):
            data = src.data_to_send()
            if not data:
                continue
            moved = True
            step = chunk or len(data)
            for i in range(0, len(data), step):
                sink.extend(dst.receive_data(data[i : i + step]))
        if not moved:
            return client_events, server_events


def connect(
    client_cfg: TLCPConfig, server_cfg: TLCPConfig, *, chunk: int | None = None
) -> tuple[ClientConnection, ServerConnection, list[Event], list[Event]]:
    client = ClientConnection(client_cfg)
    server = ServerConnection(server_cfg)
    server.start()
    client.start()
    ce, se = pump(client, server, chunk=chunk)
    return client, server, ce, se
