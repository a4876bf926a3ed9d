"""Two peers on the shared NATS server (R1): one order, identical blocks and roots."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from medledger.cluster.peer import Peer, PeerOptions
from medledger.consortium.bootstrap import new_consortium
from medledger.installed import default_registry
from medledger.ledger.store.sqlite import SQLiteStore
from tests.cluster.natsutil import drop_chain, shared_server, unique_chain
from tests.conftest import MEMBERS, ORGS, T0, Consortium, Ledger

pytestmark = [pytest.mark.integration, pytest.mark.nats]


class WallClock:
    def __call__(self) -> int:
        return time.time_ns() // 1_000_000


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[Consortium, list[Peer]]]:
    server = shared_server()
    chain = unique_chain()
    genesis, ring = new_consortium(chain, ORGS, T0, MEMBERS)
    peers: list[Peer] = []
    try:
        for org in ("hosp-a", "hosp-b"):
            store = SQLiteStore(tmp_path / f"{org}.db")
            peers.append(Peer(store, genesis, default_registry(), org=org,
                              key=ring.signing[f"{org}/root"],
                              options=PeerOptions([server], max_wait=0.01)).start())
        yield Consortium(genesis, ring), peers
    finally:
        for p in peers:
            p.stop()
            p.node.store.close()
        drop_chain([server], chain)


def wait_height(peers: list[Peer], height: int, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while any(p.node.height < height for p in peers):
        assert time.monotonic() < deadline, [p.node.height for p in peers]
        time.sleep(0.01)


def test_two_peers_build_identical_chains(cluster: tuple[Consortium, list[Peer]]) -> None:
    cons, peers = cluster
    a = Ledger(peers[0].node, cons.ring, WallClock())  # type: ignore[arg-type]
    b = Ledger(peers[1].node, cons.ring, WallClock())  # type: ignore[arg-type]
    futs = []
    for i in range(60):
        led, member = (a, "hosp-a/gw") if i % 2 == 0 else (b, "hosp-b/gw")
        raw = led.build(member, "registry", "anchor_batch", {
            "batch_id": f"b{i}", "root": f"{i:064x}", "count": 1, "record_type": "Filler",
            "source_system": "tests", "schema_version": "1"}, nonce=1000 + i)
        futs.append(led.node.submit(raw))
    receipts = [f.result(15) for f in futs]
    assert all(r.ok for r in receipts), [r for r in receipts if not r.ok][:3]
    top = max(r.height for r in receipts)
    wait_height(peers, top)
    for h in range(1, top + 1):
        ha, hb = peers[0].node.store.block(h), peers[1].node.store.block(h)
        assert ha is not None and hb is not None
        assert ha.hash == hb.hash, h
    assert peers[0].node.head.state_root == peers[1].node.head.state_root
    assert peers[0].node.head.log_size == 60
    assert sum(p.leading for p in peers) == 1


def test_retried_submission_commits_once(cluster: tuple[Consortium, list[Peer]]) -> None:
    cons, peers = cluster
    a = Ledger(peers[0].node, cons.ring, WallClock())  # type: ignore[arg-type]
    raw = a.build("hosp-a/gw", "registry", "anchor_batch", {
        "batch_id": "once", "root": "ab" * 32, "count": 1, "record_type": "Filler",
        "source_system": "tests", "schema_version": "1"})
    first = peers[0].node.submit(raw).result(15)
    # the same bytes through the other peer: one copy in the chain, same receipt
    again = peers[1].node.submit(raw).result(15)
    assert first.ok and again.tx_id == first.tx_id and again.height == first.height
    wait_height(peers, first.height)
    assert all(p.node.head.log_size == 1 for p in peers)


def test_retry_whose_first_copy_committed_during_admission_is_answered(
    cluster: tuple[Consortium, list[Peer]], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The race CI hit: peer B admits a retry while the first copy is not yet in its chain,
    executes that copy's block before registering the waiter, and NATS drops the retry as a
    duplicate. The waiter must still get the first copy's receipt."""
    cons, peers = cluster
    a = Ledger(peers[0].node, cons.ring, WallClock())  # type: ignore[arg-type]
    raw = a.build("hosp-a/gw", "registry", "anchor_batch", {
        "batch_id": "race", "root": "cd" * 32, "count": 1, "record_type": "Filler",
        "source_system": "tests", "schema_version": "1"})
    first = peers[0].node.submit(raw).result(15)
    b = peers[1].node
    verdicts = b._verdicts

    def late(batch):  # type: ignore[no-untyped-def]
        out = verdicts(batch)
        wait_height(peers[1:], first.height)  # the first copy lands meanwhile...
        # ...but admission looked before it did
        return [dataclasses.replace(v, committed=False) if not isinstance(v, Exception) else v
                for v in out]

    monkeypatch.setattr(b, "_verdicts", late)
    again = b.submit(raw).result(15)
    assert again.tx_id == first.tx_id and again.height == first.height
    assert b.orderer.free() == b.orderer.capacity  # type: ignore[attr-defined]
    assert b.head.log_size == 1
