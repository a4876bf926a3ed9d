"""Anchoring many record fingerprints with one transaction.

A gateway builds an RFC 9162 Merkle tree over ``(record_id, content_hash)`` entries, anchors its
root with ``registry.anchor_batch``, and keeps the tree (or rebuilds it) to hand out a proof per
record. Anyone holding a record, its id, the proof and the anchored root can check that the record
was anchored unchanged. Leaf input: UTF-8 record id, a 0x00 byte, the 32-byte content hash.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from medledger.ledger import merkle


def entry(record_id: str, content_hash: bytes) -> bytes:
    if len(content_hash) != 32:
        raise ValueError(f"content hash has {len(content_hash)} bytes, want 32")
    return record_id.encode("utf-8") + b"\x00" + content_hash


class Batch:
    """A Merkle tree over one batch of fingerprints, kept by the gateway that anchors it."""

    def __init__(self, entries: Iterable[tuple[str, bytes]]) -> None:
        self._tree = merkle.MemoryNodeStore()
        self.index: dict[str, int] = {}
        for record_id, content_hash in entries:
            if record_id in self.index:
                raise ValueError(f"record {record_id!r} appears twice in the batch")
            self.index[record_id] = self._tree.size
            self._tree.append(merkle.leaf_hash(entry(record_id, content_hash)))

    @property
    def count(self) -> int:
        return self._tree.size

    @property
    def root(self) -> bytes:
        return self._tree.root()

    def proof(self, record_id: str) -> tuple[int, list[bytes]]:
        """(leaf index, inclusion proof) of one record."""
        i = self.index[record_id]
        return i, merkle.inclusion_proof(i, self.count, self._tree)


def verify_in_batch(
    record_id: str,
    content_hash: bytes,
    index: int,
    count: int,
    proof: Sequence[bytes],
    root: bytes,
) -> None:
    """Raise ``merkle.ProofError`` unless the record is leaf ``index`` of the anchored batch."""
    leaf = merkle.leaf_hash(entry(record_id, content_hash))
    merkle.verify_inclusion(leaf, index, count, proof, root)
