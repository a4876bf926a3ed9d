"""What a cluster peer does with transactions the ordering service delivered: decode them and
pre-verify their signatures off the commit thread, without ever dropping a decodable one."""

from __future__ import annotations

from tests.conftest import Ledger

from medledger.crypto.keys import SigningKey
from medledger.ledger.tx import decode


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
