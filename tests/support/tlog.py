"""A small medledger-shaped log for witness tests: real RFC 9162 roots and consistency proofs,
one checkpoint per block with a ``medledger-block <height> <hash>`` line, signed by a peer.

``fork()`` copies the history so far; sealing different blocks on the copy then gives two
validly signed, conflicting histories, which is what an equivocating peer would show.
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass, field

import nacl.signing

from medledger.ledger import merkle
from medledger.ledger.checkpoint import Checkpoint, sign_checkpoint

ORIGIN = "medledger/test-1"


def seed_key(i: int) -> nacl.signing.SigningKey:
    return nacl.signing.SigningKey(hashlib.sha256(b"seed %d" % i).digest())


@dataclass
class SimLog:
    signer: str = "hosp-a"
    key: nacl.signing.SigningKey = field(default_factory=lambda: seed_key(0))
    origin: str = ORIGIN
    leaves: list[bytes] = field(default_factory=list)
    sizes: list[int] = field(default_factory=lambda: [0])  # log size after block h
    hashes: list[bytes] = field(default_factory=lambda: [hashlib.sha256(b"genesis").digest()])

    def seal(self, *txs: bytes) -> int:
        """Append a block holding ``txs`` (leaf data); return its height."""
        self.leaves.extend(txs)
        size = len(self.leaves)
        self.sizes.append(size)
        prev = self.hashes[-1]
        self.hashes.append(hashlib.sha256(prev + b"%d" % size + self.root(size)).digest())
        return len(self.sizes) - 1

    def grow(self, blocks: int, tag: bytes = b"tx") -> None:
        for _ in range(blocks):
            self.seal(tag + b"%d" % len(self.leaves))

    @property
    def height(self) -> int:
        return len(self.sizes) - 1

    def root(self, size: int) -> bytes:
        return merkle.reference_root(self.leaves[:size])

    def checkpoint(self, height: int | None = None) -> Checkpoint:
        h = self.height if height is None else height
        size = self.sizes[h]
        ext = (f"medledger-block {h} {self.hashes[h].hex()}",)
        return Checkpoint(self.origin, size, self.root(size), ext)

    def body(self, height: int | None = None) -> bytes:
        return self.checkpoint(height).body()

    def note(self, height: int | None = None) -> bytes:
        return sign_checkpoint(self.checkpoint(height), self.signer, self.key)

    def proof(self, old_size: int, new_size: int) -> list[bytes]:
        if old_size == 0:
            return []
        return merkle.reference_consistency_proof(old_size, self.leaves[:new_size])

    def fork(self) -> SimLog:
        return copy.deepcopy(self)

    def bodies(self) -> dict[int, bytes]:
        """Checkpoint body per height (input for ``first_divergent_height``)."""
        return {h: self.body(h) for h in range(self.height + 1)}
