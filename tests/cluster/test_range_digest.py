"""A block's transactions are pinned by the digest in its cut (ADR 0060).

A pull consumer reads the replica of whichever NATS server holds it. On nats-server 2.9.10 a
healed server's replica was seen to differ from the leader's, and a peer reading it built a
different block (a fork, detected only afterwards by the checkpoint comparison). These tests put
that fault in at the one place it enters — what a consumer hands the reader — and check that
neither the sequencer nor a peer ever uses a copy that differs from the stream leader's, that a
range matching no copy is never executed, and that a consumer that stops delivering while the
stream has more does not hold a reader back.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import nats.errors
import pytest

from medledger.client.client import Client
from medledger.consortium.bootstrap import Keyring
from medledger.consortium.genesis import Genesis
from medledger.ordering.jetstream import Entry, Link, StreamReader
from medledger.ordering.wire import BlockCut, Names, frame_txs, range_digest
from tests.cluster.conftest import Start, anchor_tx, publish_ordered
from tests.support.waiting import until

pytestmark = [pytest.mark.integration, pytest.mark.nats]


@pytest.fixture
def diverged(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """Make every reader's consumer of one stream (``fault["stream"]``, default TXS) serve one
    chosen message differently, once per reader: ``fault["seq"]`` is replaced by
    ``fault["data"]`` (a diverged replica's copy)."""
    fault: dict[str, Any] = {"stream": "_TXS", "seq": None, "data": b"", "served": 0}
    seen: set[int] = set()
    real = StreamReader.read

    async def read(self: StreamReader, max_msgs: int = 256, timeout: float = 0.5) -> list[Entry]:
        got = await real(self, max_msgs, timeout)
        if not self.stream.endswith(fault["stream"]) or id(self) in seen:
            return got
        out = []
        for e in got:
            if e.seq == fault["seq"] and self.read_from_leader == 0:
                seen.add(id(self))
                fault["served"] += 1
                e = Entry(e.seq, fault["data"])
            out.append(e)
        return out

    monkeypatch.setattr(StreamReader, "read", read)
    yield fault


def _client(genesis: Genesis, ring: Keyring) -> Client:
    return Client(None, genesis.chain_id, "hosp-a/gw", ring.signing["hosp-a/gw"])  # type: ignore[arg-type]


def test_sequencer_and_peer_never_use_a_diverged_copy_of_a_range(
    chain: tuple[str, Genesis, Keyring, Start], diverged: dict[str, Any],
) -> None:
    """Five TXS messages in the stream; the consumers serve message 3 as another valid,
    signed transaction. The sequencer cuts the leader's copy, the peer notices its own read
    does not match the cut and takes the leader's copy: the chain holds exactly the five
    stored transactions and never the substitute."""
    server, genesis, ring, start = chain
    client = _client(genesis, ring)
    raws = [anchor_tx(client, i) for i in range(5)]
    substitute = anchor_tx(client, 99)
    diverged.update(seq=3, data=frame_txs([substitute]))
    publish_ordered(server, genesis, [[r] for r in raws])
    peer = start("hosp-a")
    until(lambda: peer.node.head.log_size >= 5, what="the five transactions are committed")
    time.sleep(0.3)  # anything more would show now
    assert diverged["served"] >= 2  # the sequencer's reader and the feed's were both served it
    assert [t.raw for t in peer.node.store.txs_range(0, peer.node.head.log_size)] == raws
    assert peer.orderer is not None and peer.orderer.sequencer is not None
    assert peer.orderer.sequencer.diverged == 1
    assert peer.orderer.range_rereads == 1
    assert peer.orderer.mismatch is None
    assert not [a for a in peer.status()["alarms"] if a["kind"] == "range_mismatch"]


def test_a_peer_never_uses_a_cut_other_than_the_leaders(
    chain: tuple[str, Genesis, Keyring, Start], diverged: dict[str, Any],
) -> None:
    """The BLOCKS consumer serves block 2 as a well-formed cut of TXS 2..3 with a matching
    digest (as a replica holding a cut that was never committed could). The peer takes the
    leader's cut (TXS 2..2): three blocks of one transaction each, no ordering fault."""
    server, genesis, ring, start = chain
    client = _client(genesis, ring)
    raws = [anchor_tx(client, i) for i in range(3)]
    msgs = [frame_txs([r]) for r in raws]
    now = time.time_ns() // 1_000_000
    cuts = [BlockCut(i, i, now + i, "test", range_digest([msgs[i - 1]])) for i in (1, 2, 3)]
    diverged.update(stream="_BLOCKS", seq=2, data=BlockCut(2, 3, now + 2, "test",
                                                           range_digest(msgs[1:3])).encode())
    publish_ordered(server, genesis, [[r] for r in raws], cuts)
    peer = start("cdc", sequencer=False)
    until(lambda: peer.node.height >= 3, what="three blocks", show=lambda: peer.status())
    assert diverged["served"] == 1
    assert peer.orderer is not None and peer.orderer.cut_rereads == 1
    assert peer.node._failure is None
    assert [peer.node.store.block(h).tx_count for h in (1, 2, 3)] == [1, 1, 1]  # type: ignore[union-attr]
    assert [t.raw for t in peer.node.store.txs_range(0, 3)] == raws


def test_a_range_that_matches_no_copy_is_never_executed(
    chain: tuple[str, Genesis, Keyring, Start],
) -> None:
    """Cuts 1 and 2 are right; cut 3's digest matches neither the consumer's nor the leader's
    copy. The peer commits blocks 1 and 2, never block 3, and reports a ``range_mismatch``
    alarm naming height 3 (it keeps re-reading rather than fork or halt)."""
    server, genesis, ring, start = chain
    client = _client(genesis, ring)
    raws = [anchor_tx(client, i) for i in range(3)]
    now = time.time_ns() // 1_000_000
    cuts = [BlockCut(i, i, now + i, "test", range_digest([frame_txs([raws[i - 1]])]))
            for i in (1, 2)]
    cuts.append(BlockCut(3, 3, now + 3, "test", range_digest([b"not what was stored"])))
    publish_ordered(server, genesis, [[r] for r in raws], cuts)
    peer = start("cdc", sequencer=False)
    alarms = until(lambda: [a for a in peer.status()["alarms"] if a["kind"] == "range_mismatch"],
                   what="a range_mismatch alarm", show=lambda: peer.status())
    assert alarms == [{"kind": "range_mismatch", "height": 3}]
    time.sleep(1.0)
    assert peer.node.height == 2 and peer.node.head.log_size == 2
    assert [t.raw for t in peer.node.store.txs_range(0, 2)] == raws[:2]
    assert peer.node._failure is None  # stalled at the block, not halted
    assert peer.status()["lag"] == 1


def test_a_reader_whose_consumer_goes_quiet_reads_on_from_the_leader(
    chain: tuple[str, Genesis, Keyring, Start],
) -> None:
    """A consumer on a replica that stopped following (it answers every fetch with a timeout)
    while the stream holds more: the reader takes the next messages from the stream leader,
    in order, and moves its position on."""
    server, genesis, ring, _start = chain
    client = _client(genesis, ring)
    raws = [anchor_tx(client, i) for i in range(6)]
    publish_ordered(server, genesis, [[r] for r in raws])
    names = Names(genesis.chain_id)

    class Stuck:
        async def fetch(self, *_a: object, **_k: object) -> list[object]:
            raise nats.errors.TimeoutError

        async def unsubscribe(self) -> None:
            return None

    link = Link([server], "test-quiet-consumer")
    try:
        async def go() -> tuple[list[Entry], list[Entry], int]:
            reader = StreamReader(link.js, names.txs_stream, names.txs_subject, 2)
            reader._sub = Stuck()
            reader._last_msg = time.monotonic() - 10  # quiet for a while already
            first = await reader.read(4, timeout=0.05)  # from the leader: 2..5
            rest = await reader.read(10, timeout=0.5)  # a new (working) consumer: 6
            await reader.close()
            return first, rest, reader.read_from_leader

        first, rest, from_leader = link.call(go(), timeout=30)
    finally:
        link.close()
    assert [e.seq for e in first] == [2, 3, 4, 5]
    assert [e.data for e in first] == [frame_txs([r]) for r in raws[1:5]]
    assert from_leader == 4
    assert [e.seq for e in rest] == [6] and rest[0].data == frame_txs([raws[5]])
