"""Tongsuo's NTLS (TLCP) stack from the tongsuopy wheel, driven with ctypes: a real peer for interop tests."""

from __future__ import annotations

import ctypes
import socket
import struct
from dataclasses import dataclass
from pathlib import Path

import tongsuopy

from .kat import PKI

LIB = ctypes.CDLL(str(Path(tongsuopy.__file__).parent / "backends" / "_tongsuo.abi3.so"))
_vp = ctypes.c_void_p
for _name, _res, _args in [
    ("NTLS_client_method", _vp, []),
    ("NTLS_server_method", _vp, []),
    ("SSL_CTX_new", _vp, [_vp]),
    ("SSL_CTX_free", None, [_vp]),
    ("SSL_CTX_enable_ntls", None, [_vp]),
    ("SSL_CTX_set_cipher_list", ctypes.c_int, [_vp, ctypes.c_char_p]),
    ("SSL_CTX_set_options", ctypes.c_ulong, [_vp, ctypes.c_ulong]),
    ("SSL_CTX_use_sign_PrivateKey_file", ctypes.c_int, [_vp, ctypes.c_char_p, ctypes.c_int]),
    ("SSL_CTX_use_sign_certificate_file", ctypes.c_int, [_vp, ctypes.c_char_p, ctypes.c_int]),
    ("SSL_CTX_use_enc_PrivateKey_file", ctypes.c_int, [_vp, ctypes.c_char_p, ctypes.c_int]),
    ("SSL_CTX_use_enc_certificate_file", ctypes.c_int, [_vp, ctypes.c_char_p, ctypes.c_int]),
    ("SSL_CTX_load_verify_locations", ctypes.c_int, [_vp, ctypes.c_char_p, ctypes.c_char_p]),
    ("SSL_CTX_set_verify", None, [_vp, ctypes.c_int, _vp]),
    ("SSL_new", _vp, [_vp]),
    ("SSL_free", None, [_vp]),
    ("SSL_set_fd", ctypes.c_int, [_vp, ctypes.c_int]),
    ("SSL_connect", ctypes.c_int, [_vp]),
    ("SSL_accept", ctypes.c_int, [_vp]),
    ("SSL_read", ctypes.c_int, [_vp, ctypes.c_char_p, ctypes.c_int]),
    ("SSL_write", ctypes.c_int, [_vp, ctypes.c_char_p, ctypes.c_int]),
    ("SSL_shutdown", ctypes.c_int, [_vp]),
    ("SSL_get_error", ctypes.c_int, [_vp, ctypes.c_int]),
    ("SSL_get_current_cipher", _vp, [_vp]),
    ("SSL_CIPHER_get_name", ctypes.c_char_p, [_vp]),
    ("SSL_get1_session", _vp, [_vp]),
    ("SSL_set_session", ctypes.c_int, [_vp, _vp]),
    ("SSL_session_reused", ctypes.c_int, [_vp]),
    ("SSL_SESSION_free", None, [_vp]),
    ("ERR_get_error", ctypes.c_ulong, []),
    ("ERR_error_string", ctypes.c_char_p, [ctypes.c_ulong, ctypes.c_char_p]),
]:
    _fn = getattr(LIB, _name)
    _fn.restype = _res
    _fn.argtypes = _args

PEM = 1
VERIFY_PEER, VERIFY_FAIL_IF_NO_PEER_CERT = 1, 2
OP_NO_TICKET = 1 << 14
CIPHER_NAMES = {
    0xE013: b"ECC-SM2-SM4-CBC-SM3",
    0xE053: b"ECC-SM2-SM4-GCM-SM3",
    0xE011: b"ECDHE-SM2-SM4-CBC-SM3",
    0xE051: b"ECDHE-SM2-SM4-GCM-SM3",
}


class TongsuoError(Exception):
    pass


def _errors() -> str:
    out = []
    while code := LIB.ERR_get_error():
        out.append(LIB.ERR_error_string(code, None).decode())
    return "; ".join(out)


def _check(ok: int, what: str) -> None:
    if ok != 1:
        raise TongsuoError(f"{what}: {_errors()}")


@dataclass
class PeerResult:
    cipher: str
    received: bytes
    resumed: bool = False


def _context(*, server: bool, suite: int, side: str | None, verify: bool, ticket: bool, require: bool = True) -> int:
    ctx = LIB.SSL_CTX_new(LIB.NTLS_server_method() if server else LIB.NTLS_client_method())
    LIB.SSL_CTX_enable_ntls(ctx)
    _check(LIB.SSL_CTX_set_cipher_list(ctx, CIPHER_NAMES[suite]), "cipher list")
    if not ticket:
        LIB.SSL_CTX_set_options(ctx, OP_NO_TICKET)
    if side is not None:
        for kind in ("sign", "enc"):
            crt = str(PKI / f"{side}_{kind}.crt.pem").encode()
            key = str(PKI / f"{side}_{kind}.key.plain.pem").encode()
            _check(getattr(LIB, f"SSL_CTX_use_{kind}_certificate_file")(ctx, crt, PEM), f"{kind} cert")
            _check(getattr(LIB, f"SSL_CTX_use_{kind}_PrivateKey_file")(ctx, key, PEM), f"{kind} key")
    _check(LIB.SSL_CTX_load_verify_locations(ctx, str(PKI / "ca.crt.pem").encode(), None), "CA")
    if verify:
        # a server with require=False asks for a client certificate but takes a client without one
        LIB.SSL_CTX_set_verify(ctx, VERIFY_PEER | (VERIFY_FAIL_IF_NO_PEER_CERT if server and require else 0), None)
    return ctx


def _blocking(sock: socket.socket) -> None:
    # libssl needs a blocking fd (a Python timeout makes it non-blocking); bound waits in the kernel instead.
    sock.settimeout(None)
    timeval = struct.pack("ll", 10, 0)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)


def _session(ssl: int, sock: socket.socket, reply: bool, message: bytes) -> PeerResult:
    buf = ctypes.create_string_buffer(65536)
    cipher = LIB.SSL_CIPHER_get_name(LIB.SSL_get_current_cipher(ssl)).decode()
    resumed = LIB.SSL_session_reused(ssl) == 1
    if not reply:
        n = LIB.SSL_write(ssl, message, len(message))
        _check(int(n == len(message)), "write")
    received = b""
    while len(received) < len(message):
        n = LIB.SSL_read(ssl, buf, len(buf))
        if n <= 0:
            break
        received += buf.raw[:n]
    if reply:
        LIB.SSL_write(ssl, received, len(received))
    LIB.SSL_shutdown(ssl)
    return PeerResult(cipher, received, resumed)


def run_client(
    port: int,
    suite: int,
    message: bytes,
    *,
    with_cert: bool = False,
    ticket: bool = False,
    connections: int = 1,
) -> PeerResult:
    """Connect to 127.0.0.1:port, send ``message``, read as many bytes back, close; each later connection
    offers the previous one's session. Returns the last connection's result. Blocking."""
    side = "client" if with_cert else None
    ctx = _context(server=False, suite=suite, side=side, verify=True, ticket=ticket)
    session = None
    result = None
    try:
        for _ in range(connections):
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            _blocking(sock)
            ssl = LIB.SSL_new(ctx)
            try:
                LIB.SSL_set_fd(ssl, sock.fileno())
                if session is not None:
                    _check(LIB.SSL_set_session(ssl, session), "set session")
                    LIB.SSL_SESSION_free(session)
                    session = None
                rc = LIB.SSL_connect(ssl)
                if rc != 1:
                    raise TongsuoError(f"SSL_connect {LIB.SSL_get_error(ssl, rc)}: {_errors()}")
                result = _session(ssl, sock, False, message)
                session = LIB.SSL_get1_session(ssl)
            finally:
                LIB.SSL_free(ssl)
                sock.close()
    finally:
        if session is not None:
            LIB.SSL_SESSION_free(session)
        LIB.SSL_CTX_free(ctx)
    assert result is not None
    return result


def run_server(
    listener: socket.socket,
    suite: int,
    expect: int,
    *,
    verify_client: bool = False,
    require_client: bool = True,
    ticket: bool = False,
    connections: int = 1,
) -> list[PeerResult]:
    """Accept ``connections`` connections (one context, so one session cache), echo ``expect`` bytes each."""
    ctx = _context(server=True, suite=suite, side="server", verify=verify_client, ticket=ticket, require=require_client)
    results = []
    try:
        for _ in range(connections):
            sock, _ = listener.accept()
            _blocking(sock)
            ssl = LIB.SSL_new(ctx)
            try:
                LIB.SSL_set_fd(ssl, sock.fileno())
                rc = LIB.SSL_accept(ssl)
                if rc != 1:
                    raise TongsuoError(f"SSL_accept {LIB.SSL_get_error(ssl, rc)}: {_errors()}")
                results.append(_session(ssl, sock, True, b"\x00" * expect))
            finally:
                LIB.SSL_free(ssl)
                sock.close()
    finally:
        LIB.SSL_CTX_free(ctx)
    return results
