"""Faults on a 3-server JetStream cluster: a killed stream leader, a cut-off peer, fencing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from medledger.cluster.natsd import NatsCluster
from medledger.errors import Code, RejectedError
from medledger.ordering.jetstream import Sequencer, last_cut
from medledger.ordering.wire import EMPTY_RANGE, BlockCut
from tests.cluster.conftest import WallClock, running_cluster, same_chain, wait_height
from tests.cluster.load import Load
from tests.conftest import Ledger
from tests.support.services import NATS_ENGINES

pytestmark = [pytest.mark.integration, pytest.mark.nats, pytest.mark.slow]
MEMBERS = ["hosp-a/gw", "hosp-b/gw", "hosp-a/steward", "hosp-b/steward"]


@pytest.fixture(scope="module", params=NATS_ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def nats3(engine: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsCluster]:
    """Every fault on both engines: Debian's 2.9.10 and the PyPI 2.15.1 build."""
    yield from running_cluster(tmp_path_factory.mktemp(f"nats3-{engine}"), engine)


def check_exactly_once(load: Load, peers: list) -> None:  # type: ignore[type-arg]
    assert len(load.acked) == len(load.submitted)
    for p in peers:
        assert p.node.head.log_size == len(load.submitted)  # nothing lost, nothing twice
        assert p.node.store.known_txs(list(load.submitted)) == set(load.submitted)


# Writes must resume within 10 s (issue 3), asserted on both engines. Most of the pause is the
# engine's own Raft election (4-9 s on either); our share after it is 0.05-1.3 s (ADR 0061). On
# 2.9.10 the bound was 15 s until session 7 (ADR 0056), when our share was up to 1.6 s and one
# CI run there measured 10.10 s; since ADR 0061, 40 kills on 2.15.1 paused 4.17-8.86 s and 20
# on 2.9.10 4.21-8.02 s.
RESUME_WITHIN = 10.0


def test_killing_the_stream_leader_under_load(engine: str, nats3: NatsCluster, start_peers) -> None:  # type: ignore[no-untyped-def]
    cons, peers = start_peers()
    leds = [Ledger(p.node, cons.ring, WallClock()) for p in peers]  # type: ignore[arg-type]
    load = Load(leds, MEMBERS).start()
    time.sleep(1.5)
    leader = nats3.stream_leader(peers[0].names.txs_stream)
    assert leader is not None
    killed_at = time.monotonic()
    nats3.kill(leader)
    try:
        time.sleep(12)
        gap = load.max_gap(killed_at, time.monotonic())
        load.stop()
    finally:
        nats3.start(leader)
        nats3.wait_ready()
    wait_height(peers, max(r.height for r in load.acked.values()))
    print(f"killed {leader}: longest pause in acknowledgements {gap:.2f} s, "
          f"{len(load.acked)} txs acked, {load.retries} resubmissions")
    assert gap <= RESUME_WITHIN
    check_exactly_once(load, peers)
    same_chain(peers)


def test_peer_cut_off_from_nats_catches_up(nats3: NatsCluster, start_peers) -> None:  # type: ignore[no-untyped-def]
    lonely = nats3.specs[2]
    cons, peers = start_peers(("hosp-a", "hosp-b"))
    _, more = start_peers(("cdc",), servers=[lonely.url], sequencer=False)
    cut_off = more[-1]
    leds = [Ledger(p.node, cons.ring, WallClock()) for p in peers]  # type: ignore[arg-type]
    load = Load(leds, MEMBERS).start()
    time.sleep(1.0)
    nats3.kill(lonely.name)
    try:
        time.sleep(1.0)
        stuck_at = cut_off.node.height
        # the others go on (after a stream-leader election if n3 led one) ...
        wait_height(peers, stuck_at + 3, timeout=20)
        assert cut_off.node.height == stuck_at  # ... while the cut-off peer cannot
    finally:
        nats3.start(lonely.name)
        nats3.wait_ready()
    load.stop()
    top = max(r.height for r in load.acked.values())
    wait_height([*peers, cut_off], top, timeout=60)
    same_chain([*peers, cut_off])
    check_exactly_once(load, [*peers, cut_off])


def test_a_deposed_sequencer_cannot_append(nats3: NatsCluster, start_peers) -> None:  # type: ignore[no-untyped-def]
    cons, peers = start_peers(("hosp-a",))
    led = Ledger(peers[0].node, cons.ring, WallClock())  # type: ignore[arg-type]
    led.filler()
    led.filler()
    link = peers[0].link

    async def stale_append() -> tuple[int, BlockCut | None, RejectedError | None]:
        height, cut = await last_cut(link.js, peers[0].names)
        assert cut is not None and height >= 2
        stale = Sequencer(link.js, peers[0].names, "usurper")
        # believes the chain is one block shorter than it is
        fake = BlockCut(cut.last + 1, cut.last, cut.time + 1, "usurper", EMPTY_RANGE)
        try:
            await stale._append(height - 1, fake)
        except RejectedError as exc:
            return height, cut, exc
        return height, cut, None

    height, cut, err = link.call(stale_append(), timeout=20)
    assert err is not None and err.code == Code.FENCED
    after, cut_after = link.call(last_cut(link.js, peers[0].names), timeout=20)
    assert (after, cut_after) == (height, cut)  # the stream did not change
    led.filler()  # the real sequencer goes on
    assert peers[0].node.height == height + 1


def test_sequencer_handover_keeps_one_order(nats3: NatsCluster, start_peers) -> None:  # type: ignore[no-untyped-def]
    cons, peers = start_peers(("hosp-a", "hosp-b"), lease_ttl=1.0)
    leds = [Ledger(p.node, cons.ring, WallClock()) for p in peers]  # type: ignore[arg-type]
    load = Load(leds[1:], MEMBERS).start()  # clients of the peer that stays
    deadline = time.monotonic() + 10
    while not any(p.leading for p in peers):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.5)
    leader = next(p for p in peers if p.leading)
    other = next(p for p in peers if p is not leader)
    if leader is peers[1]:  # keep the load on the surviving peer
        load.leds = [leds[0]]
    leader.stop()
    time.sleep(3.0)
    load.stop()
    assert other.leading
    top = max(r.height for r in load.acked.values())
    wait_height([other], top)
    assert other.node.head.log_size == len(load.submitted)
    asyncio.set_event_loop(None)
