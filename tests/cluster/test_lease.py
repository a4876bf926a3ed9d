"""The sequencer lease is for liveness only: a sequencer that cannot reach the lease's KV bucket
keeps cutting blocks (nobody else can take the lease meanwhile, and the fence keeps appends
safe whatever happens), and takes the lease up again once the bucket is back; a lease that
lapsed while the KV was electing is left to its holder for a short grace."""

from __future__ import annotations

import asyncio
import time

import nats.js.errors
import pytest

from medledger.client.client import Client
from medledger.consortium.bootstrap import Keyring
from medledger.consortium.genesis import Genesis
from medledger.ordering.jetstream import LEASE_KEY, Link, Sequencer, ensure_streams
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


def test_a_lapsed_lease_is_left_to_its_holder_for_a_grace(
    chain: tuple[str, Genesis, Keyring, Start],
) -> None:
    """hosp-b has seen hosp-a hold the lease. When hosp-a's key lapses by its TTL (as it does
    when the KV's own stream elects for longer than the TTL), hosp-b leaves it for
    ``LAPSE_GRACE`` seconds — the time the live holder needs to re-create it — and only then
    takes it. A released lease, or one never seen held by another, is taken at once."""
    server, genesis, _ring, _start = chain
    names = Names(genesis.chain_id)
    link = Link([server], "test-lease-grace")
    try:
        async def go() -> tuple[float, int | None, int | None]:
            await ensure_streams(link.js, names, lease_ttl=1.0)
            kv = await link.js.key_value(names.lease_bucket)
            await kv.create(LEASE_KEY, b"hosp-a")  # held, then never renewed
            follower = Sequencer(link.js, names, "hosp-b")
            assert await follower._acquire(kv) is None  # held by another: seen so
            while True:  # until the TTL has removed it
                try:
                    await kv.get(LEASE_KEY)
                except nats.js.errors.KeyNotFoundError:
                    break
                await asyncio.sleep(0.02)
            lapsed_at = time.monotonic()
            rev = None
            while rev is None:
                rev = await follower._acquire(kv)
                if rev is None:
                    await asyncio.sleep(0.02)
            waited = time.monotonic() - lapsed_at
            await kv.delete(LEASE_KEY, last=rev)  # released by its holder
            other = Sequencer(link.js, names, "cdc")
            other._saw_other = True
            released = await other._acquire(kv)
            await kv.delete(LEASE_KEY, last=released)
            await kv.create(LEASE_KEY, b"hosp-a")  # a lapse seen by a peer that never saw
            newcomer = Sequencer(link.js, names, "hosp-c")  # another hold it: taken at once
            while True:
                try:
                    await kv.get(LEASE_KEY)
                except nats.js.errors.KeyNotFoundError:
                    break
                await asyncio.sleep(0.02)
            fresh = await newcomer._acquire(kv)
            return waited, released, fresh

        waited, released, fresh = link.call(go(), timeout=30)
    finally:
        link.close()
    assert Sequencer.LAPSE_GRACE - 0.05 <= waited < Sequencer.LAPSE_GRACE + 2.0
    assert released is not None and fresh is not None
