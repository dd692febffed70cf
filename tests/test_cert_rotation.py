"""Certificate rotation on reload: new sign/enc certificates and keys are checked as `certs check` would and
used for new TLCP connections; a bad new set is refused and the running one kept. Real TLCP to the
simulator, which records the client certificate each handshake presented."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from gateway.crypto import Certificate
from gateway.crypto.testpki import generate_test_pki, issue_next
from gateway.daemon import Daemon
from gateway.demo import demo_config, sim_tlcp_config
from gateway.sim.server import Simulator

from conftest import Gateway, fresh


def replace_file(path: Path, data: bytes) -> None:
    mode = path.stat().st_mode & 0o777
    path.write_bytes(data)
    path.chmod(mode)


async def test_rotation_applies_to_new_connections_and_a_bad_set_is_refused(short_tmp: Path) -> None:
    pki = generate_test_pki(short_tmp / "pki", write_ca_key=True)["ca"].parent
    seen: list[int] = []
    platform = sim_tlcp_config(pki)
    check = platform.verify_peer
    assert check is not None

    def recording(certs: Sequence[Certificate]) -> None:
        seen.append(certs[0].serial)  # the client's sign certificate, as this handshake presented it
        check(certs)

    sim = Simulator()
    await sim.start(tlcp=type(platform)(**{**platform.__dict__, "verify_peer": recording}))
    assert sim.addresses is not None
    config = demo_config(short_tmp / "gw", sim.addresses.platform, pki=pki)
    daemon = Daemon(config)
    await daemon.start()
    gw = Gateway(daemon, config, sim)
    try:
        sign_no = await gw.sign_in()
        first = seen[-1]
        original = {n: (pki / n).read_bytes() for n in ("client_sign.crt.pem", "client_sign.key.pem")}

        # A certificate from another CA: refused, the running identity stays and traffic goes on.
        other = generate_test_pki(short_tmp / "other")["ca"].parent
        replace_file(pki / "client_sign.crt.pem", (other / "client_sign.crt.pem").read_bytes())
        replace_file(pki / "client_sign.key.pem", (other / "client_sign.key.pem").read_bytes())
        assert daemon.reload_identity() == "refused"
        assert any(e["kind"] == "identity_refused" for e in daemon.recent.snapshot()["errors"])
        assert daemon.connections is not None
        await daemon.connections.close()  # force a new handshake: it must still use the old identity
        reply = await gw.post(fresh("1101_query_request.json", sign_no=sign_no))
        assert reply.status == 200 and seen[-1] == first

        # A proper renewal from the same CA, with new keys: used by the next new connection.
        for name, data in original.items():
            replace_file(pki / name, data)
        issue_next(pki, "client")
        renewed = Certificate.from_pem((pki / "client_sign.crt.pem").read_bytes()).serial
        assert renewed != first
        assert daemon.reload_identity() == "applied"
        await daemon.connections.close()
        reply = await gw.post(fresh("1101_query_request.json", sign_no=sign_no))
        assert reply.status == 200 and json.loads(reply.body)["infcode"] in (0, "0")
        assert seen[-1] == renewed
    finally:
        await daemon.stop(1)
        await sim.stop()
