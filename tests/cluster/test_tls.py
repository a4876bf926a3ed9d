"""A peer talks to a NATS JetStream server over mutual TLS; a client without a certificate
signed by the consortium's CA is refused."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from medledger.cluster.natsd import free_port
from medledger.cluster.peer import Peer, PeerOptions
from medledger.consortium.bootstrap import new_consortium
from medledger.errors import Code, MedLedgerError
from medledger.installed import default_registry
from medledger.ledger.store.sqlite import SQLiteStore
from medledger.ordering.jetstream import Link, tls_context
from tests.cluster.conftest import WallClock
from tests.conftest import MEMBERS, ORGS, T0, Ledger
from tests.support.certs import make_ca
from tests.support.services import port_open, require_binary

pytestmark = [pytest.mark.integration, pytest.mark.nats]


def test_peer_over_mutual_tls(tmp_path: Path) -> None:
    binary = require_binary("nats-server")
    make_ca(tmp_path, server="nats", clients=("peer", "stranger"))
    stranger_ca = tmp_path / "other"
    stranger_ca.mkdir()
    make_ca(stranger_ca, server="x", clients=("stranger",))
    port = free_port()
    (tmp_path / "n.conf").write_text(
        f"listen: 127.0.0.1:{port}\njetstream {{ store_dir: \"{tmp_path / 'js'}\" }}\n"
        f"tls {{\n  cert_file: \"{tmp_path / 'nats.pem'}\"\n"
        f"  key_file: \"{tmp_path / 'nats.key'}\"\n"
        f"  ca_file: \"{tmp_path / 'ca.pem'}\"\n  verify: true\n}}\n")
    proc = subprocess.Popen([binary, "-c", str(tmp_path / "n.conf")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not port_open("127.0.0.1", port):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        url = f"tls://127.0.0.1:{port}"
        ctx = tls_context(str(tmp_path / "ca.pem"), str(tmp_path / "peer.pem"),
                          str(tmp_path / "peer.key"))
        genesis, ring = new_consortium("tls-chain", ORGS, T0, MEMBERS)
        peer = Peer(SQLiteStore(tmp_path / "a.db"), genesis, default_registry(), org="hosp-a",
                    key=ring.signing["hosp-a/root"],
                    options=PeerOptions([url], max_wait=0.01, tls=ctx)).start()
        try:
            r = Ledger(peer.node, ring, WallClock()).filler()  # type: ignore[arg-type]
            assert r.ok and peer.node.height == r.height
        finally:
            peer.stop()
            peer.node.store.close()
        # a certificate from another CA does not get in
        bad = tls_context(str(tmp_path / "ca.pem"), str(stranger_ca / "stranger.pem"),
                          str(stranger_ca / "stranger.key"))
        with pytest.raises(MedLedgerError) as err:
            Link([url], "stranger", tls=bad, connect_within=3)
        assert err.value.code == Code.NODE_UNAVAILABLE
        assert "SSL" in err.value.message or "certificate" in err.value.message
    finally:
        proc.terminate()
        proc.wait(10)
