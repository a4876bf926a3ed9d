"""What a cluster peer does with transactions the ordering service delivered: decode them and
pre-verify their signatures off the commit thread, without ever dropping a decodable one."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tests.conftest import Clock, Consortium, Ledger

from medledger.crypto.keys import SigningKey
from medledger.errors import Code, MedLedgerError
from medledger.installed import default_registry
from medledger.ledger.store.sqlite import SQLiteStore
from medledger.ledger.tx import decode
from medledger.node.admit import Admitted, admit_batch, verify_batch
from medledger.node.node import Node
from medledger.ordering.solo import SoloOrderer


def _anchor(ledger: Ledger, i: int, **kw: object) -> bytes:
    return ledger.build("hosp-a/gw", "registry", "anchor_batch", {
        "batch_id": f"s{i}", "root": f"{i:064x}", "count": 1, "record_type": "Filler",
        "source_system": "tests", "schema_version": "1"}, **kw)  # type: ignore[arg-type]


def test_prepare_stream_pre_verifies_keeps_order_and_drops_only_undecodable(
    ledger: Ledger,
) -> None:
    good = [_anchor(ledger, i) for i in range(150)]  # more than one part per thread
    forged = _anchor(ledger, 999, key=SigningKey.generate())
    replayed = good[0]  # a second copy: still handed on, the executor decides
    raws = [*good[:75], forged, b"{not a transaction", *good[75:], replayed]
    out = ledger.node.prepare_stream(raws)
    assert [a.tx.raw for a in out] == [*good[:75], forged, *good[75:], replayed]
    verified = [a for a in out if a.keys]
    assert {a.tx.raw for a in verified} == set(good)  # the forged signature is not pre-verified
    pub = ledger.ring.signing["hosp-a/gw"].public
    assert all(a.keys == (pub,) and a.tx == decode(a.tx.raw) for a in verified)


def test_verify_batch_verdicts_one_to_one_without_nonce_reads(ledger: Ledger) -> None:
    """The stream's pre-check: decoding, chain id and signatures against the signer's key. A
    transaction reusing a spent nonce still verifies (ingress refuses it; for the stream the
    executor decides it at its block)."""
    used = _anchor(ledger, 0)
    assert ledger.node.submit(used).result(10).ok
    first = _anchor(ledger, 1, nonce=decode(used).nonce)  # another tx reusing that nonce
    other_chain = _anchor(ledger, 2, chain="another-chain")
    unknown_key = _anchor(ledger, 3, key=SigningKey.generate())
    tampered = _anchor(ledger, 4).replace(b'"s4"', b'"s9"')  # still canonical, sig broken
    raws = [first, other_chain, unknown_key, tampered, b"[]"]
    got = verify_batch(raws, ledger.node.chain_id, ledger.node.store, ledger.clock())
    assert isinstance(got[0], Admitted) and got[0].tx.raw == first
    assert got[0].keys == (ledger.ring.signing["hosp-a/gw"].public,)
    # ingress, by contrast, reads the nonce
    ingress = admit_batch([first], ledger.node.chain_id, ledger.node.store, ledger.clock())
    assert isinstance(ingress[0], MedLedgerError) and ingress[0].code == Code.REPLAYED_NONCE
    codes = [g.code for g in got[1:] if isinstance(g, MedLedgerError)]
    assert codes == [Code.WRONG_CHAIN, Code.UNKNOWN_SIGNER, Code.BAD_SIGNATURE,
                     Code.BAD_ENVELOPE]


def test_an_orderer_that_answers_on_the_admitting_thread_does_not_deadlock(
    tmp_path: Path, consortium: Consortium, clock: Clock,
) -> None:
    """A cluster's publish can be acknowledged (as a duplicate) before the orderer's callback is
    attached, so the orderer settles waiters on the thread that hands it the batch. CI hung on
    that once: the node held its own lock while handing over."""

    class Eager(SoloOrderer[Admitted]):
        node: Node

        def put(self, items: Sequence[Admitted]) -> None:
            self.node.settle_committed([a.tx.tx_id for a in items])  # takes the node's lock
            super().put(items)

    def make(n: Node) -> Eager:
        o = Eager(max_wait=0.001, clock=clock)
        o.node = n
        return o

    node = Node.create(SQLiteStore(tmp_path / "l.db"), consortium.genesis, default_registry(),
                       signer=("hosp-a", consortium.ring.signing["hosp-a/root"]),
                       max_wait=0.001, clock=clock, orderer=make).start()
    ledger = Ledger(node, consortium.ring, clock)
    got: list[Any] = []
    t = threading.Thread(target=lambda: got.append(node.submit(_anchor(ledger, 1)).result(10)),
                         daemon=True)
    t.start()
    t.join(15)
    deadlocked = t.is_alive()
    if not deadlocked:  # (a deadlocked node cannot be stopped: leave it to the daemon thread)
        node.stop()
        node.store.close()
    assert not deadlocked, "submit never returned: the node deadlocked on its own lock"
    assert got and got[0].ok
