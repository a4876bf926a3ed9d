"""The sequencer lease is for liveness only: a sequencer that cannot reach the lease's KV bucket
keeps cutting blocks (nobody else can take the lease meanwhile, and the fence keeps appends
safe whatever happens), and takes the lease up again once the bucket is back."""

from __future__ import annotations

import time

import pytest

from medledger.client.client import Client
from medledger.consortium.bootstrap import Keyring
from medledger.consortium.genesis import Genesis
from medledger.ordering.jetstream import LEASE_KEY, Link, ensure_streams
from medledger.ordering.wire import Names
from tests.cluster.conftest import Start, anchor_tx

pytestmark = [pytest.mark.integration, pytest.mark.nats]


def test_a_sequencer_keeps_cutting_while_its_lease_bucket_is_gone(
    chain: tuple[str, Genesis, Keyring, Start],
) -> None:
    server, genesis, ring, start = chain
    names = Names(genesis.chain_id)
    client = Client(None, genesis.chain_id, "hosp-a/gw", ring.signing["hosp-a/gw"])  # type: ignore[arg-type]
    peer = start("hosp-a", lease_ttl=1.0)
    assert peer.node.submit(anchor_tx(client, 0)).result(30).ok
    assert peer.leading
    link = Link([server], "test-lease")
    try:
        link.call(link.js.delete_key_value(names.lease_bucket), timeout=10)
        time.sleep(2.5)  # more than twice the TTL: renewals have failed for over a second
        # still the sequencer, and blocks are still cut
        receipts = [peer.node.submit(anchor_tx(client, i)).result(30) for i in range(1, 4)]
        assert all(r.ok for r in receipts)
        assert peer.leading and peer.node.head.log_size == 4

        link.call(ensure_streams(link.js, names, lease_ttl=1.0), timeout=30)  # the bucket back

        async def holder() -> bytes | None:
            kv = await link.js.key_value(names.lease_bucket)
            try:
                return (await kv.get(LEASE_KEY)).value
            except Exception:
                return None

        deadline = time.monotonic() + 10
        while (held := link.call(holder(), timeout=10)) != b"hosp-a":
            assert time.monotonic() < deadline, f"the lease is not taken up again: {held!r}"
            time.sleep(0.1)
    finally:
        link.close()
    assert peer.node.submit(anchor_tx(client, 9)).result(30).ok
    assert peer.leading and peer.node.head.log_size == 5
