"""A whole consortium on one machine: a 3-server NATS cluster and one peer process per org.

Layout of a cluster directory::

    DIR/cluster.json            chain id, peers (org, HTTP port, pid; optionally the ``host``
                                address its API is bound to and a ``wrap`` command prefix it
                                is started under, e.g. ``ip netns exec NS``: ADR 0058)
    DIR/genesis.json            the consortium's genesis (shared)
    DIR/keyring.json            every key of this development consortium (for demos and load)
    DIR/nats/                   n1..n3 configs, JetStream data, logs (``natsd.NatsCluster``)
    DIR/peers/<org>/peer.json   the peer's settings (``PeerConfig``)
    DIR/peers/<org>/keyring.json  only that organisation's own keys
    DIR/peers/<org>/ledger.db   its SQLite store (or a PostgreSQL schema named after the org)
    DIR/peers/<org>/peer.log    its log

Each peer is ``medledger peer run DIR/peers/<org>``; it can run on another machine with the same
files (see docs/deployment.md).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from medledger.cluster.natsd import NatsCluster, _alive, _wait_gone, free_port
from medledger.consortium.bootstrap import Keyring, new_consortium
from medledger.errors import Code, MedLedgerError

DEMO_MEMBERS: list[tuple[str, str]] = [
    ("hosp-a/gw", "gateway"), ("hosp-b/gw", "gateway"), ("hosp-c/gw", "gateway"),
    ("hosp-a/steward", "data-steward"), ("hosp-b/steward", "data-steward"),
    ("research/analyst", "researcher"), ("cdc/analyst", "researcher"),
]


@dataclass
class PeerConfig:
    org: str
    store: str  # SQLite path relative to the peer directory, or a postgresql:// location
    servers: list[str]
    http_port: int
    http_host: str = "127.0.0.1"
    replicas: int = 3
    sequencer: bool = True
    witnesses: list[str] | None = None
    max_block_txs: int = 2000
    max_wait_ms: int = 20
    admit_processes: int = 2
    # alarm in /v1/health when block times differ from this host's clock by more than this
    # many ms (0: never; cluster/clock.py)
    clock_skew_alarm_ms: int = 30_000
    # give up (exit 2, node_unavailable) if no NATS server answers at start within this long
    nats_connect_within_s: float = 60.0
    # TLS (paths relative to the peer directory or absolute): CA that signed the NATS servers'
    # certificates, this peer's client certificate and key for mutual TLS, the HTTP API's
    # own certificate and key, and the CA that signed it (for the organisation's own clients
    # that read this directory, such as its gateway)
    nats_tls_ca: str | None = None
    nats_tls_cert: str | None = None
    nats_tls_key: str | None = None
    http_tls_cert: str | None = None
    http_tls_key: str | None = None
    http_tls_ca: str | None = None

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=1))

    @classmethod
    def load(cls, path: Path) -> PeerConfig:
        return cls(**json.loads(path.read_text()))


def _peer_schema(pg: tuple[str, str | None], genesis_hash: bytes, org: str) -> str:
    """The store location of ``org``'s peer: a schema ``<prefix>_<org>`` in the database of
    ``pg`` (``postgres_location``'s (URI, schema)). The prefix is the schema named in the URI,
    else ``ml_`` and the genesis hash's first 8 hex digits, so that two clusters laid out on
    one database never share a schema."""
    from urllib.parse import quote

    uri, prefix = pg
    schema = f"{prefix or 'ml_' + genesis_hash.hex()[:8]}_{org.replace('-', '_')}"
    return f"{uri}{'&' if '?' in uri else '?'}schema={quote(schema, safe='')}"


@dataclass
class LocalCluster:
    root: Path
    chain: str
    peers: dict[str, dict[str, Any]] = field(default_factory=dict)  # org -> {port, pid, ...}

    # -- layout -------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        root: Path,
        orgs: Sequence[tuple[str, str, str]],
        *,
        chain: str = "medledger-local",
        postgres: str | None = None,
        nats_servers: int = 3,
        members: Sequence[tuple[str, str]] | None = None,
    ) -> LocalCluster:
        """Lay out a cluster of ``orgs`` (id, name, kind); ``members`` (id, role) beside each
        organisation's root, default the ``DEMO_MEMBERS`` of those organisations."""
        if (root / "cluster.json").exists():
            raise MedLedgerError(Code.ALREADY_EXISTS, f"{root} already holds a cluster")
        from medledger.ledger.store.open import postgres_location

        pg = None if postgres is None else postgres_location(postgres)
        if postgres is not None and pg is None:
            raise MedLedgerError(Code.BAD_ARGS, f"--postgres wants a postgresql:// URI, got "
                                 f"{postgres!r}")
        root.mkdir(parents=True, exist_ok=True)
        ids = {o[0] for o in orgs}
        if members is None:
            members = [m for m in DEMO_MEMBERS if m[0].split("/")[0] in ids]
        genesis, ring = new_consortium(chain, orgs, time.time_ns() // 1_000_000, members)
        (root / "genesis.json").write_bytes(genesis.encoded)
        ring.save(root / "keyring.json")
        nats = NatsCluster.create(root / "nats", nats_servers)
        witnesses = [o[0] for o in orgs]
        c = cls(root, chain)
        for org, _name, _kind in orgs:
            pdir = root / "peers" / org
            pdir.mkdir(parents=True)
            (pdir / "genesis.json").write_bytes(genesis.encoded)
            own = Keyring({k: v for k, v in ring.signing.items() if k.split("/")[0] == org},
                          {org: ring.agreement[org]})
            own.save(pdir / "keyring.json")
            store = "ledger.db" if pg is None else _peer_schema(pg, genesis.hash, org)
            cfg = PeerConfig(org, store, nats.urls, free_port(), witnesses=witnesses,
                             replicas=min(3, nats_servers))
            cfg.save(pdir / "peer.json")
            c.peers[org] = {"port": cfg.http_port, "pid": 0}
        c.save()
        return c

    @classmethod
    def load(cls, root: Path) -> LocalCluster:
        path = root / "cluster.json"
        if not path.exists():
            raise MedLedgerError(Code.NOT_FOUND, f"{root} holds no cluster "
                                 "(run `medledger cluster up` first)")
        doc = json.loads(path.read_text())
        return cls(root, doc["chain"], doc["peers"])

    def place(self, nats: Sequence[tuple[str, Sequence[str]]],
              peers: Mapping[str, tuple[str, Sequence[str]]], *,
              binary: str | None = None) -> None:
        """Give each NATS server (``nats``: one (host, wrap) per server, in order) and each
        organisation's peer (``peers``: org -> (host, wrap)) its own host address, and the
        command prefix it is started under — for a cluster spread over network namespaces
        (ADR 0058). The peers' ``servers`` become the servers' new URLs. Precondition: laid
        out by ``create`` and not started."""
        old = self.nats
        placed = NatsCluster.create(old.root, len(old.specs), binary=binary or old.binary,
                                    hosts=[h for h, _ in nats], wraps=[w for _, w in nats])
        for org, (host, wrap) in peers.items():
            path = self.root / "peers" / org / "peer.json"
            cfg = PeerConfig.load(path)
            cfg.http_host, cfg.servers = host, placed.urls
            cfg.save(path)
            self.peers[org].update(host=host, wrap=list(wrap))
        self.save()

    def save(self) -> None:
        (self.root / "cluster.json").write_text(
            json.dumps({"chain": self.chain, "peers": self.peers}, indent=1))

    @property
    def nats(self) -> NatsCluster:
        return NatsCluster.load(self.root / "nats")

    def keyring(self) -> Keyring:
        return Keyring.load(self.root / "keyring.json")

    def url(self, org: str) -> str:
        info = self.peers[org]
        return f"http://{info.get('host', '127.0.0.1')}:{info['port']}"

    # -- processes ----------------------------------------------------------------------

    def start(self, timeout: float = 60.0) -> None:
        nats = self.nats
        if not all(nats.running().values()):
            for name, up in nats.running().items():
                if not up:
                    nats.start(name, detach=True)
            nats.wait_ready()
        for org in self.peers:
            self.start_peer(org)
        self.wait_healthy(timeout)

    def start_peer(self, org: str) -> None:
        info = self.peers[org]
        if info.get("pid") and _alive(info["pid"]):
            return
        pdir = self.root / "peers" / org
        log = open(pdir / "peer.log", "ab")  # noqa: SIM115 - the child owns it
        proc = subprocess.Popen(
            [*info.get("wrap", []), sys.executable, "-m", "medledger", "peer", "run",
             str(pdir)],
            stdout=log, stderr=log, start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"})
        log.close()
        info["pid"] = proc.pid
        self.save()

    def kill_peer(self, org: str, sig: int = signal.SIGKILL) -> None:
        pid = self.peers[org].get("pid")
        if pid and _alive(pid):
            os.kill(pid, sig)
            _wait_gone(pid, 30)
        self.peers[org]["pid"] = 0
        self.save()

    def wait_healthy(self, timeout: float = 60.0, orgs: Sequence[str] | None = None) -> None:
        deadline = time.monotonic() + timeout
        for org in orgs or list(self.peers):
            while self.health(org) is None:
                if time.monotonic() > deadline:
                    log = self.root / "peers" / org / "peer.log"
                    tail = log.read_text(errors="replace")[-600:] if log.exists() else ""
                    raise MedLedgerError(Code.NODE_UNAVAILABLE,
                                         f"peer {org} did not come up; {log} ends: {tail}")
                time.sleep(0.2)

    def health(self, org: str) -> dict[str, Any] | None:
        try:
            with urllib.request.urlopen(self.url(org) + "/v1/health", timeout=2) as r:
                doc: dict[str, Any] = json.loads(r.read())
                return doc
        except OSError:
            return None

    def status(self) -> dict[str, Any]:
        peers = {}
        for org, info in self.peers.items():
            h = self.health(org)
            peers[org] = {"running": bool(info.get("pid")) and _alive(info["pid"]),
                          "port": info["port"], **((h or {}).get("cluster") or {})}
        return {"chain": self.chain, "nats": self.nats.running(), "peers": peers}

    def stop(self) -> None:
        """Peers first (gracefully: each finishes its block and hands over the lease), then
        the NATS servers."""
        for org in self.peers:
            self.kill_peer(org, signal.SIGTERM)
        self.nats.stop()
