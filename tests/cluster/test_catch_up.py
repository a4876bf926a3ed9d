"""A peer that replays a backlog: identical chain, blocks handed over in order even when several
are prepared at once, and a witness that cosigns only the newest checkpoint while far behind
(consistency still proven from the last one it cosigned)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import pytest

from medledger.client.client import Client
from medledger.cluster.finality import CATCH_UP_LAG
from medledger.cluster.peer import Peer
from medledger.consortium.bootstrap import Keyring
from medledger.consortium.genesis import Genesis
from medledger.errors import Code, MedLedgerError
from medledger.ledger.block import BlockHeader
from medledger.ledger.checkpoint import parse_body, split_note
from medledger.ordering.wire import BlockCut, frame_txs, range_digest
from tests.cluster.conftest import Start, anchor_tx, publish_ordered

pytestmark = [pytest.mark.integration, pytest.mark.nats]

def _wait(cond: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def _witnessed_size(peer: Peer) -> int:
    latest = peer.exchange.witness.latest(peer.exchange.origin)
    return 0 if latest is None else parse_body(split_note(latest)[0]).size


def test_a_peer_far_behind_replays_to_the_same_chain_and_witnesses_the_newest(
    chain: tuple[str, Genesis, Keyring, Start],
) -> None:
    _server, genesis, ring, start = chain
    a = start("hosp-a", max_block_txs=3)
    b = start("hosp-b", max_block_txs=3, sequencer=False)
    client = Client(None, genesis.chain_id, "hosp-a/gw", ring.signing["hosp-a/gw"])  # type: ignore[arg-type]
    futs = [a.node.submit(anchor_tx(client, i)) for i in range(90)]  # one TXS message each
    top = max(f.result(30).height for f in futs)
    assert top > 2 * CATCH_UP_LAG  # far enough behind for the laggard to skip checkpoints
    _wait(lambda: b.node.height >= top, "hosp-b reaches the head")

    late = start("cdc", run=False, sequencer=False)
    cosigned: list[int] = []
    add = late.exchange.witness.add_checkpoint

    def counting(old: int, proof: Sequence[bytes], note: bytes) -> str:
        line = add(old, proof, note)  # the real witness: checks consistency, persists, signs
        cosigned.append(parse_body(split_note(note)[0]).size)
        return line

    late.exchange.witness.add_checkpoint = counting  # type: ignore[method-assign,assignment]
    # blocks read many cuts at a time go to the catching-up preparer (the node's worker
    # processes, ADR 0062); at the head, cuts come one or two at a time
    used: dict[str, int] = {"behind": 0, "head": 0}
    orderer = late.orderer
    assert orderer is not None
    for name, attr in (("behind", "prepare_behind"), ("head", "prepare")):
        def spy(raws: list[bytes], real: Callable[[list[bytes]], list[object]] =
                getattr(orderer, attr), name: str = name) -> list[object]:
            used[name] += 1
            return real(raws)
        setattr(orderer, attr, spy)
    late.start()
    _wait(lambda: late.node.height >= top, "the laggard catches up")
    assert used["behind"] >= 1
    for h in range(1, top + 1):
        ours, theirs = late.node.store.block(h), a.node.store.block(h)
        assert ours is not None and theirs is not None and ours.hash == theirs.hash, h
    head = late.node.head
    assert head.state_root == a.node.head.state_root and head.log_size == 90
    # its witness ends on the newest checkpoint, and the others accept that cosignature
    # (the witness records a checkpoint inside add_checkpoint, a moment before the wrapper
    # above appends it: wait on the wrapper's list, not on the witness)
    _wait(lambda: bool(cosigned) and cosigned[-1] == head.log_size,
          "the newest checkpoint is cosigned")
    assert _witnessed_size(late) == head.log_size and cosigned == sorted(cosigned)
    _wait(lambda: "cdc" in a.node.store.cosignatures(head.log_size),
          "hosp-a stores cdc's cosignature of the head")
    assert not a.exchange.state.alarms and not late.exchange.state.alarms
    at_head = used["head"]
    for i in range(90, 93):  # one at a time, each waited for: at the head now
        h = a.node.submit(anchor_tx(client, i)).result(30).height
        _wait(lambda h=h: late.node.height >= h, "the laggard follows the head")  # type: ignore[misc]
    assert used["head"] > at_head


def test_the_witness_skips_a_superseded_checkpoint_only_while_far_behind(
    chain: tuple[str, Genesis, Keyring, Start],
) -> None:
    _server, genesis, ring, start = chain
    a = start("hosp-a")
    c = start("cdc", sequencer=False)
    client = Client(None, genesis.chain_id, "hosp-a/gw", ring.signing["hosp-a/gw"])  # type: ignore[arg-type]
    first = a.node.submit(anchor_tx(client, 0)).result(30)
    _wait(lambda: c.node.height >= first.height and _witnessed_size(c) == 1, "cdc cosigns")
    seen: list[BlockHeader] = []
    c.node.on_durable[:] = [seen.append]  # hold cdc's own cosigning: the test drives it
    for i in range(1, 4):  # three more blocks, one at a time
        r = a.node.submit(anchor_tx(client, i)).result(30)
        _wait(lambda r=r: c.node.height >= r.height, "cdc has the block")  # type: ignore[misc]
    h1, h2, h3 = seen[-3:]
    ex = c.exchange
    ex._newest = h3
    ex.behind = lambda: 0  # at the head: a superseded checkpoint is still cosigned
    ex._cosign_own(h1)
    assert _witnessed_size(c) == h1.log_size
    ex.behind = lambda: CATCH_UP_LAG  # far behind: it is skipped...
    ex._cosign_own(h2)
    assert _witnessed_size(c) == h1.log_size
    ex._cosign_own(h3)  # ...and the newest is cosigned, proven consistent from h1's
    assert _witnessed_size(c) == h3.log_size
    assert ex.state.cosigned_height == h3.height


def test_blocks_before_a_malformed_cut_are_committed_then_the_peer_halts(
    chain: tuple[str, Genesis, Keyring, Start],
) -> None:
    """Ten good cuts and then one that skips a TXS message, all in the stream before the peer
    starts: it prepares several blocks at once, yet commits exactly the ten, in order, and
    stops with ``ordering_fault`` at the bad one (every honest peer halts at the same height)."""
    server, genesis, ring, start = chain
    client = Client(None, genesis.chain_id, "hosp-a/gw", ring.signing["hosp-a/gw"])  # type: ignore[arg-type]
    raws = [anchor_tx(client, i) for i in range(12)]
    now = time.time_ns() // 1_000_000
    cuts = [BlockCut(i, i, now + i, "test", range_digest([frame_txs([raws[i - 1]])]))
            for i in range(1, 11)]
    # messages 11 and 12 skipped (the gap is refused before any range is read)
    cuts.append(BlockCut(13, 13, now + 11, "test", range_digest([])))
    publish_ordered(server, genesis, [[r] for r in raws], cuts)
    peer = start("cdc", sequencer=False)
    _wait(lambda: peer.node._failure is not None, "the peer halts")
    assert isinstance(peer.node._failure, MedLedgerError)
    assert peer.node._failure.code == Code.ORDERING_FAULT
    store_head = peer.node.store.head()
    assert store_head is not None and store_head.height == 10
    assert peer.node.height == 10 and peer.node.head.log_size == 10
    assert [t.raw for t in peer.node.store.txs_range(0, 10)] == raws[:10]
