"""The callback listener as a part: the platform's calls over mutual TLCP, with our identity and the platform's
certificate pinned by the policy, handed to the HIS (gateway.relay.callback).

It holds the identity: a certificate rotation swaps the TLCP settings new handshakes are served with, and a
new session cache (a session resumed from before the rotation would skip the new certificate).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import structlog

from gateway.config import Config
from gateway.crypto import Certificate
from gateway.errors import GatewayError
from gateway.http1 import Limits
from gateway.http1.listen import close_listener
from gateway.http1.messages import Peer
from gateway.http1.server import Http1Server
from gateway.identity import LoadedIdentity, load_identity
from gateway.net.tlcp_stream import start_tlcp_server
from gateway.net.tlcp_transport import ca_names, chain_verifier
from gateway.policy.loader import PolicyError
from gateway.policy.model import Policy
from gateway.relay.callback import CallbackRelay, HisTarget
from gateway.tlcp import MemorySessionCache, TLCPConfig

log = structlog.get_logger("gateway.callback")

#: seconds a callback session may be resumed after its full handshake
CALLBACK_SESSION_LIFETIME = 300.0


class CallbackListener:
    name = "callback"

    def __init__(self, cfg: Config, policy: Policy | None, on_result: Callable[[str], None]) -> None:
        if policy is None or policy.callback is None:
            raise PolicyError([(None, "callback", "callback.enabled needs a callback section in the policy")])
        self.pins = frozenset(subject for subject, _ in policy.callback_peers)
        if not self.pins or cfg.identity is None:
            raise PolicyError(
                [(None, "callback", "the callback listener needs the identity and callback_peers (pinned subjects)")]
            )
        assert cfg.callback is not None
        self.cfg, self.policy, self.on_result = cfg, policy, on_result
        self._tls: TLCPConfig | None = None
        self._server: asyncio.Server | None = None
        self.address: tuple[str, int] | None = None

    def tls_config(self, ident: LoadedIdentity) -> TLCPConfig:
        bundle = self.cfg.callback.client_ca_bundle if self.cfg.callback is not None else None
        return TLCPConfig(
            credentials=ident.credentials,
            verify_peer=chain_verifier(ident.roots, pins=self.pins),
            request_client_cert=True,
            require_client_cert=True,
            client_ca_names=ca_names(
                Certificate.load_pem_chain(bundle.read_bytes()) if bundle is not None else ident.roots
            ),
            # Each callback comes on a connection of its own; a session is kept only after the peer passed the
            # chain and pin checks above, and only as long as a Tongsuo server keeps one by default.
            session_cache=MemorySessionCache(time.monotonic, lifetime=CALLBACK_SESSION_LIFETIME, size=256),
        )

    def prepare_identity(self, ident: LoadedIdentity) -> Callable[[], None]:
        """The settings for a rotated identity, built now (the CA bundle read), and what makes new handshakes
        present it; connections already open finish as they are."""
        now = self._tls.credentials if self._tls is not None else None
        new = ident.credentials
        if now is not None and (now.sign_cert.der, now.enc_cert.der) == (new.sign_cert.der, new.enc_cert.der):
            return lambda: None  # a reload that rotated nothing keeps the sessions callers may resume
        tls = self.tls_config(ident)

        def switch() -> None:
            self._tls = tls
            log.info("callback_identity_switched", subject=new.sign_cert.subject, serial=f"{new.sign_cert.serial:x}")

        return switch

    async def start(self) -> None:
        assert self.cfg.identity is not None and self.cfg.callback is not None and self.policy.callback is not None
        self._tls = self.tls_config(load_identity(self.cfg.identity))
        sources = list(self.policy.callback.sources) + [c for _, cidrs in self.policy.callback_peers for c in cidrs]
        fwd = self.cfg.callback.forward
        relay = CallbackRelay(HisTarget(fwd.host, fwd.port, fwd.path, fwd.timeout), sources, on_result=self.on_result)
        server = Http1Server(relay.handle, relay.refuse, Limits())

        async def on_tlcp(reader: asyncio.StreamReader, writer: Any) -> None:
            addr = writer.get_extra_info("peername") or ("?", 0)
            certs = writer.handshake.peer_certificates
            log.info("callback_connection", peer=f"{addr[0]}:{addr[1]}", subject=certs[0].subject if certs else None)
            await server.serve(reader, writer, Peer(address=f"{addr[0]}:{addr[1]}"))

        cb = self.policy.callback
        self._server = await start_tlcp_server(on_tlcp, cb.address, cb.port, config=self._current)
        self.address = self._server.sockets[0].getsockname()[:2]
        log.info("callback_listening", address=f"{cb.address}:{self.address[1]}", pinned=sorted(self.pins))

    def _current(self) -> TLCPConfig:
        if self._tls is None:
            raise GatewayError("callback listener used before start")
        return self._tls

    async def stop(self) -> None:
        if self._server is not None:
            await close_listener(self._server, None)
            self._server = None
