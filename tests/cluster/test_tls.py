"""A peer talks to a NATS JetStream server over mutual TLS; a client without a certificate
signed by the consortium's CA is refused."""

from __future__ import annotations

import contextlib
import json
import signal
import ssl
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import httpx
import pytest

from medledger.client.client import Client
from medledger.client.http import HttpTransport
from medledger.cluster.local import LocalCluster, PeerConfig
from medledger.cluster.natsd import free_port
from medledger.cluster.peer import Peer, PeerOptions
from medledger.consortium.bootstrap import new_consortium
from medledger.errors import Code, MedLedgerError
from medledger.gateway import service
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
    server_log = (tmp_path / "nats.log").open("wb")
    proc = subprocess.Popen([binary, "-c", str(tmp_path / "n.conf")],
                            stdout=subprocess.DEVNULL, stderr=server_log)
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
        # the server refused the certificate: under TLS 1.3 the client may see that only as
        # the server closing the connection (a broken pipe), so the server's log is the witness
        deadline = time.monotonic() + 5
        while b"certificate" not in (logged := (tmp_path / "nats.log").read_bytes()):
            assert time.monotonic() < deadline, logged[-2000:]
            time.sleep(0.05)
        assert b"TLS handshake error" in logged
    finally:
        proc.terminate()
        proc.wait(10)
        server_log.close()


def _routez(http_port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/routez", timeout=2) as r:
        doc: dict[str, Any] = json.loads(r.read())
        return doc


def _conf(root: Path, name: str, port: int, http: int, cluster: int, routes: list[int],
          cert: Path, ca: Path) -> Path:
    """A server config in the shape docs/deployment.md gives: mutual TLS for clients and for
    routes (``cert`` serves both: each server dials the others with it)."""
    route_urls = ", ".join(f"nats-route://127.0.0.1:{p}" for p in routes)
    tls = (f'cert_file: "{cert}", key_file: "{cert.with_suffix(".key")}", '
           f'ca_file: "{ca}", verify: true')
    path = root / f"{name}.conf"
    path.write_text(
        f"server_name: {name}\nlisten: 127.0.0.1:{port}\nhttp: 127.0.0.1:{http}\n"
        f'jetstream {{ store_dir: "{root / "js" / name}" }}\n'
        f"tls {{ {tls} }}\n"
        f"cluster {{\n  name: medledger\n  listen: 127.0.0.1:{cluster}\n  no_advertise: true\n"
        f"  routes: [ {route_urls} ]\n  tls {{ {tls} }}\n}}\n")
    return path


def test_routes_and_peer_api_over_tls(tmp_path: Path) -> None:
    """Three NATS servers whose routes are mutual TLS (a server with a certificate from another
    CA gets no route), R3 streams over them, and a `medledger peer run` process that reaches
    NATS over mutual TLS and serves its API over HTTPS only (docs/deployment.md)."""
    binary = require_binary("nats-server")
    make_ca(tmp_path, server="api", clients=("peer",), dual=("n1", "n2", "n3"))
    other = tmp_path / "other"
    other.mkdir()
    make_ca(other, server="x", clients=(), dual=("rogue",))
    names = ["n1", "n2", "n3", "rogue"]
    ports = {n: (free_port(), free_port(), free_port()) for n in names}
    good = [ports[n][2] for n in names[:3]]
    procs = []
    try:
        for n in names:
            cert = (other if n == "rogue" else tmp_path) / f"{n}.pem"
            ca = (other if n == "rogue" else tmp_path) / "ca.pem"
            conf = _conf(tmp_path, n, *ports[n], routes=good, cert=cert, ca=ca)
            procs.append(subprocess.Popen([binary, "-c", str(conf)],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        deadline = time.monotonic() + 20
        while not all(_port_routes(ports[n][1]) == 2 for n in names[:3]):
            assert time.monotonic() < deadline, {n: _port_routes(ports[n][1]) for n in names}
            time.sleep(0.2)
        time.sleep(1.0)  # the rogue has dialled every route by now (it did so at start)
        assert _port_routes(ports["rogue"][1]) == 0
        assert all(_port_routes(ports[n][1]) == 2 for n in names[:3])

        c = LocalCluster.create(tmp_path / "c", [("hosp-a", "Hospital A", "hospital"),
                                                 ("hosp-b", "Hospital B", "hospital"),
                                                 ("cdc", "CDC", "cdc")], chain="tls-routes")
        pdir = c.root / "peers" / "hosp-a"
        cfg = PeerConfig.load(pdir / "peer.json")
        cfg.servers = [f"tls://127.0.0.1:{ports[n][0]}" for n in names[:3]]
        cfg.witnesses = ["hosp-a"]
        cfg.nats_tls_ca, cfg.nats_tls_cert, cfg.nats_tls_key = (
            str(tmp_path / "ca.pem"), str(tmp_path / "peer.pem"), str(tmp_path / "peer.key"))
        cfg.http_tls_cert, cfg.http_tls_key = str(tmp_path / "api.pem"), str(tmp_path / "api.key")
        cfg.save(pdir / "peer.json")
        c.start_peer("hosp-a")
        base = f"https://127.0.0.1:{cfg.http_port}"
        verify = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
        deadline = time.monotonic() + 60
        while True:
            try:
                r = httpx.get(base + "/v1/health", verify=verify, timeout=2)
                if r.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, (pdir / "peer.log").read_text()[-800:]
            time.sleep(0.3)
        with pytest.raises(httpx.HTTPError):  # no plain HTTP on the API port
            httpx.get(f"http://127.0.0.1:{cfg.http_port}/v1/health", timeout=2)
        with pytest.raises(httpx.ConnectError):  # a client that does not trust the CA
            httpx.get(base + "/v1/health", timeout=2)
        ring = c.keyring()
        with HttpTransport(base, transport=httpx.HTTPTransport(verify=verify)) as http:
            client = Client(http, c.chain, "hosp-a/gw", ring.signing["hosp-a/gw"])
            receipt = client.call("registry", "register", {
                "record_id": "tls-1", "record_type": "Encounter", "source_system": "HIS",
                "schema_version": "1", "content_hash": "ab" * 32})
            assert receipt.ok, receipt
        # the organisation's gateway reads the peer directory and anchors over HTTPS, checking
        # the API certificate against http_tls_ca
        cfg.http_tls_ca = str(tmp_path / "ca.pem")
        cfg.save(pdir / "peer.json")
        with service.ledger(pdir, "hosp-a", member="hosp-a/gw") as anchorer:
            assert anchorer.anchor("b-tls", "cd" * 32, 3, "Observation", "LIS", "1")["height"]
            assert anchorer.anchored_root("b-tls") == "cd" * 32
        cfg.http_tls_ca = str(other / "ca.pem")  # a CA that did not sign the API certificate
        cfg.save(pdir / "peer.json")
        with pytest.raises(MedLedgerError) as refused, \
                service.ledger(pdir, "hosp-a", member="hosp-a/gw"):
            pass
        assert refused.value.code == Code.NODE_UNAVAILABLE
        assert "certificate" in refused.value.message.lower()
        streams = _jsz(ports["n1"][1])
        assert streams and all(s.get("config", {}).get("num_replicas") == 3 for s in streams)
    finally:
        with contextlib.suppress(Exception):
            c.kill_peer("hosp-a", signal.SIGTERM)
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(10)


def _port_routes(http_port: int) -> int:
    try:
        return int(_routez(http_port).get("num_routes", 0))
    except OSError:
        return -1


def _jsz(http_port: int) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/jsz?streams=true&config=true",
                                timeout=2) as r:
        doc = json.loads(r.read())
    return [s for acc in doc.get("account_details", []) for s in acc.get("stream_detail", [])]
