"""Batch anchoring: one root over many fingerprints, a proof per record."""

from __future__ import annotations

import hashlib

import pytest

from medledger.ledger import merkle
from medledger.records.batch import Batch, verify_in_batch


def _entries(n: int) -> list[tuple[str, bytes]]:
    return [(f"rec-{i}", hashlib.sha256(str(i).encode()).digest()) for i in range(n)]


@pytest.mark.parametrize("n", [1, 2, 3, 7, 64, 1000])
def test_every_record_proves_against_the_root(n: int) -> None:
    entries = _entries(n)
    batch = Batch(entries)
    leaves = [rid.encode() + b"\x00" + h for rid, h in entries]
    assert batch.root == merkle.reference_root(leaves)
    for rid, h in entries[:: max(1, n // 17)]:
        index, proof = batch.proof(rid)
        verify_in_batch(rid, h, index, batch.count, proof, batch.root)


def test_changed_record_or_id_fails() -> None:
    entries = _entries(50)
    batch = Batch(entries)
    index, proof = batch.proof("rec-7")
    with pytest.raises(merkle.ProofError):
        verify_in_batch("rec-7", hashlib.sha256(b"other").digest(), index, 50, proof, batch.root)
    with pytest.raises(merkle.ProofError):
        verify_in_batch("rec-8", entries[7][1], index, 50, proof, batch.root)


def test_duplicate_and_bad_hash_rejected() -> None:
    with pytest.raises(ValueError, match="twice"):
        Batch([("a", bytes(32)), ("a", bytes(32))])
    with pytest.raises(ValueError, match="32"):
        Batch([("a", b"short")])
