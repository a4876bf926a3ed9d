"""Where a local cluster's servers and peers listen: loopback by default, or each on its own
host address and started under a command prefix (``NatsCluster.create(hosts=, wraps=)``,
``LocalCluster.place``; ADR 0058). Layout only: nothing is started."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from medledger.cluster.local import LocalCluster, PeerConfig
from medledger.cluster.natsd import NatsCluster
from medledger.errors import MedLedgerError
from medledger.workspace import DEFAULT_ORGS

ADDRESSES = re.compile(r"\b(\d+\.\d+\.\d+\.\d+):\d+")


def test_default_is_loopback_everywhere(tmp_path: Path) -> None:
    c = NatsCluster.create(tmp_path, 3)
    for s in c.specs:
        assert set(ADDRESSES.findall((tmp_path / f"{s.name}.conf").read_text())) == {
            "127.0.0.1"}
        assert s.url == f"nats://127.0.0.1:{s.port}" and s.wrap == []


def test_each_server_on_its_own_host(tmp_path: Path) -> None:
    hosts = ["10.9.8.10", "10.9.8.11", "10.9.8.12"]
    wraps = [["ip", "netns", "exec", f"ns{i}"] for i in range(3)]
    c = NatsCluster.create(tmp_path, 3, hosts=hosts, wraps=wraps)
    for s, host in zip(c.specs, hosts, strict=True):
        conf = (tmp_path / f"{s.name}.conf").read_text()
        assert f"listen: {host}:{s.port}" in conf and f"http: {host}:{s.http_port}" in conf
        assert f"listen: {host}:{s.cluster_port}" in conf
        for other in c.specs:  # routes name every server at its own address
            assert f"nats-route://{other.host}:{other.cluster_port}" in conf
        assert "127.0.0.1" not in conf
    assert c.urls == [f"nats://{h}:{s.port}" for h, s in zip(hosts, c.specs, strict=True)]
    again = NatsCluster.load(tmp_path)  # kept in nats.json for restarts
    assert [(s.host, s.wrap) for s in again.specs] == list(zip(hosts, wraps, strict=True))
    with pytest.raises(MedLedgerError):
        NatsCluster.create(tmp_path / "x", 3, hosts=hosts[:2])


def test_place_spreads_a_laid_out_cluster(tmp_path: Path) -> None:
    c = LocalCluster.create(tmp_path / "c", DEFAULT_ORGS[:2], chain="place-test")
    nats = [(f"10.9.8.{10 + i}", ["wrap", f"n{i}"]) for i in range(3)]
    peers = {"hosp-a": ("10.9.8.20", ["wrap", "a"]), "hosp-b": ("10.9.8.21", ["wrap", "b"])}
    c.place(nats, peers, binary="/opt/nats-server")
    c = LocalCluster.load(tmp_path / "c")
    assert c.nats.urls == [f"nats://{h}:{s.port}" for (h, _), s in zip(
        nats, c.nats.specs, strict=True)]
    assert c.nats.binary == "/opt/nats-server"
    for org, (host, wrap) in peers.items():
        cfg = PeerConfig.load(tmp_path / "c" / "peers" / org / "peer.json")
        assert (cfg.http_host, cfg.servers) == (host, c.nats.urls)
        assert c.url(org) == f"http://{host}:{cfg.http_port}"
        assert c.peers[org]["wrap"] == wrap


def test_postgres_peers_get_schemas_of_their_own_cluster(tmp_path: Path) -> None:
    from medledger.ledger.store.open import postgres_location

    base = "postgresql://root@127.0.0.1:5432/test?sslmode=disable"
    orgs = DEFAULT_ORGS[:2]

    def stores(root: Path) -> dict[str, tuple[str, str | None] | None]:
        return {o[0]: postgres_location(PeerConfig.load(root / "peers" / o[0] /
                                                       "peer.json").store) for o in orgs}

    one = stores(LocalCluster.create(tmp_path / "one", orgs, postgres=base).root)
    two = stores(LocalCluster.create(tmp_path / "two", orgs, postgres=base).root)
    for laid in (one, two):
        assert {v[0] for v in laid.values() if v} == {base}  # the URI as given, schema apart
        assert laid["hosp-a"] and str(laid["hosp-a"][1]).startswith("ml_")
        assert str(laid["hosp-a"][1]).endswith("_hosp_a")
    # two clusters on one database never share a schema (each has its own genesis)
    assert not {v[1] for v in one.values() if v} & {v[1] for v in two.values() if v}
    # a schema in the URI is the prefix, whatever characters it holds
    named = stores(LocalCluster.create(tmp_path / "three", orgs,
                                       postgres=base + "&schema=dev%20one%26x").root)
    assert named["hosp-b"] == (base, "dev one&x_hosp_b")
    with pytest.raises(MedLedgerError) as exc:
        LocalCluster.create(tmp_path / "four", orgs, postgres="/var/lib/ledger.db")
    assert exc.value.code.value == "bad_args"
    assert not (tmp_path / "four").exists()  # nothing laid out
