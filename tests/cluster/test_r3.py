"""Peers on a private 3-server JetStream cluster with R3 streams."""

from __future__ import annotations

import pytest

from tests.cluster.conftest import WallClock, same_chain, wait_height
from tests.conftest import Ledger

pytestmark = [pytest.mark.integration, pytest.mark.nats]


def anchor(led: Ledger, member: str, i: int) -> bytes:
    return led.build(member, "registry", "anchor_batch", {
        "batch_id": f"b{i}", "root": f"{i:064x}", "count": 1, "record_type": "Filler",
        "source_system": "tests", "schema_version": "1"}, nonce=10_000 + i)


def test_three_peers_on_r3(start_peers) -> None:  # type: ignore[no-untyped-def]
    cons, peers = start_peers()
    leds = [Ledger(p.node, cons.ring, WallClock()) for p in peers]  # type: ignore[arg-type]
    members = ["hosp-a/gw", "hosp-b/gw", "hosp-a/steward"]
    futs = [leds[i % 3].node.submit_many([anchor(leds[i % 3], members[i % 3], i)])[0]
            for i in range(90)]
    receipts = [f.result(20) for f in futs]
    assert all(r.ok for r in receipts), [r.code for r in receipts if not r.ok][:3]
    wait_height(peers, max(r.height for r in receipts))
    same_chain(peers)
    assert {p.node.head.state_root for p in peers} == {peers[0].node.head.state_root}
