"""A private 3-server NATS JetStream cluster on loopback, shared by this folder's tests."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from medledger.client.client import Client
from medledger.cluster.natsd import NatsCluster
from medledger.cluster.peer import Peer, PeerOptions
from medledger.consortium.bootstrap import Keyring, new_consortium
from medledger.consortium.genesis import Genesis
from medledger.installed import default_registry
from medledger.ledger.store.sqlite import SQLiteStore
from medledger.ledger.tx import tx_id
from medledger.ordering.jetstream import Link, ensure_streams
from medledger.ordering.wire import BlockCut, Names, frame_txs, txs_msg_id
from tests.cluster.natsutil import drop_chain, shared_server, unique_chain
from tests.conftest import MEMBERS, ORGS, T0, Consortium
from tests.support.services import require_nats_engine


class WallClock:
    def __call__(self) -> int:
        return time.time_ns() // 1_000_000


def running_cluster(root: Path, engine: str) -> Iterator[NatsCluster]:
    c = NatsCluster.create(root, 3, binary=require_nats_engine(engine))
    c.start()
    try:
        c.wait_ready()
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="module")
def nats3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsCluster]:
    """A 3-server cluster of Debian's nats-server (test_faults also runs on the PyPI one)."""
    yield from running_cluster(tmp_path_factory.mktemp("nats3"), "debian")


@pytest.fixture
def start_peers(tmp_path: Path, nats3: NatsCluster) -> Iterator[
        Callable[..., tuple[Consortium, list[Peer]]]]:
    chain = unique_chain("f")
    genesis, ring = new_consortium(chain, ORGS, T0, MEMBERS)
    started: list[Peer] = []

    def start(orgs: tuple[str, ...] = ("hosp-a", "hosp-b", "cdc"), **kw: object) -> tuple[
            Consortium, list[Peer]]:
        for org in orgs:
            opts = PeerOptions(kw.get("servers", nats3.urls), replicas=3, max_wait=0.01)  # type: ignore[arg-type]
            for k, v in kw.items():
                setattr(opts, k, v)
            store = SQLiteStore(tmp_path / f"{org}.db")
            started.append(Peer(store, genesis, default_registry(), org=org,
                                key=ring.signing[f"{org}/root"], options=opts).start())
        return Consortium(genesis, ring), list(started)

    yield start
    for p in started:
        try:
            p.stop()
        finally:
            with contextlib.suppress(Exception):
                p.node.store.close()
    drop_chain(nats3.urls, chain)


def wait_height(peers: list[Peer], height: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while any(p.node.height < height for p in peers):
        assert time.monotonic() < deadline, [p.node.height for p in peers]
        time.sleep(0.02)


def same_chain(peers: list[Peer]) -> None:
    heads = [p.node.store.head() for p in peers]
    top = min(h.height for h in heads if h is not None)
    for h in range(1, top + 1):
        hashes = {p.node.store.block(h).hash for p in peers}  # type: ignore[union-attr]
        assert len(hashes) == 1, f"peers differ at height {h}"


Start = Callable[..., Peer]


@pytest.fixture
def chain(tmp_path: Path) -> Iterator[tuple[str, Genesis, Keyring, Start]]:
    """A fresh chain on the shared single NATS server: (server, genesis, keyring, start) where
    ``start(org, run=True, **peer_options)`` starts (or only builds) that organisation's peer."""
    server = shared_server()
    name = unique_chain("cu")
    genesis, ring = new_consortium(name, ORGS, T0, MEMBERS)
    peers: list[Peer] = []

    def start(org: str, run: bool = True, **kw: object) -> Peer:
        opts = PeerOptions([server], max_wait=0.005)
        for k, v in kw.items():
            setattr(opts, k, v)
        peer = Peer(SQLiteStore(tmp_path / f"{org}.db"), genesis, default_registry(), org=org,
                    key=ring.signing[f"{org}/root"], options=opts)
        peers.append(peer)
        return peer.start() if run else peer

    try:
        yield server, genesis, ring, start
    finally:
        for p in peers:
            p.stop()
            p.node.store.close()
        drop_chain([server], name)


def anchor_tx(client: Client, i: int) -> bytes:
    """A small valid transaction (an anchor), distinct for each ``i``."""
    return client.build("registry", "anchor_batch", {
        "batch_id": f"cu{i}", "root": f"{i:064x}", "count": 1, "record_type": "Filler",
        "source_system": "tests", "schema_version": "1"})


def publish_ordered(server: str, genesis: Genesis, messages: Sequence[Sequence[bytes]],
                    cuts: Sequence[BlockCut] = ()) -> None:
    """Put TXS messages (each a batch of raw transactions) and then block cuts in the chain's
    streams, as clients and a hand-driven sequencer would."""
    names = Names(genesis.chain_id)
    link = Link([server], "test-manual-sequencer")
    try:
        async def go() -> None:
            await ensure_streams(link.js, names)
            for raws in messages:
                await link.js.publish(names.txs_subject, frame_txs(raws), headers={
                    "Nats-Msg-Id": txs_msg_id([tx_id(r) for r in raws])})
            for cut in cuts:
                await link.js.publish(names.blocks_subject, cut.encode())

        link.call(go(), timeout=30)
    finally:
        link.close()

