"""World state: a key → canonical-JSON-bytes map, layered per block and per transaction.

Writes of one block are committed together. Their commitment is

* ``writes_root``: the RFC 9162 Merkle root over the block's final writes sorted by key, each leaf
  ``encode_write(key, value)`` (a deletion is a write of ``None``);
* ``state_root(h) = SHA-256("medledger/state/v1" ‖ state_root(h-1) ‖ writes_root(h))``.

So the state root commits to the whole history of state, and "key K had value V from height h"
is provable with the block header and a Merkle proof into that block's writes (ADR 0003).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Protocol

from medledger.ledger import merkle

ZERO = bytes(32)


def nonce_key(signer: str, nonce: int) -> str:
    """The state key that records ``signer``'s use of ``nonce``."""
    return f"_nonce/{signer}/{nonce}"


class StateReader(Protocol):
    def get_state(self, key: str) -> bytes | None: ...

    def get_states(self, keys: Sequence[str]) -> dict[str, bytes | None]: ...


def encode_write(key: str, value: bytes | None) -> bytes:
    """Leaf bytes of one write: len(key) as 2 bytes, key, then 0x01+value or 0x00 (deleted)."""
    k = key.encode("utf-8")
    if value is None:
        return len(k).to_bytes(2, "big") + k + b"\x00"
    return len(k).to_bytes(2, "big") + k + b"\x01" + value


def writes_root(writes: Mapping[str, bytes | None]) -> bytes:
    return merkle.root_of([merkle.leaf_hash(encode_write(k, writes[k])) for k in sorted(writes)])


def next_state_root(prev: bytes, root_of_writes: bytes) -> bytes:
    return hashlib.sha256(b"medledger/state/v1" + prev + root_of_writes).digest()


class BlockState:
    """A block's pending writes over committed state. Reads see the newest layer first."""

    def __init__(self, base: StateReader) -> None:
        self.base = base
        self.writes: dict[str, bytes | None] = {}
        self._read: dict[str, bytes | None] = {}

    def prefetch(self, keys: Sequence[str]) -> None:
        """Read many committed keys in one round trip (a cache hint; never changes results)."""
        missing = [k for k in keys if k not in self._read and k not in self.writes]
        if missing:
            self._read.update(self.base.get_states(missing))

    def get(self, key: str) -> bytes | None:
        if key in self.writes:
            return self.writes[key]
        if key in self._read:
            return self._read[key]
        return self.base.get_state(key)

    def tx(self) -> TxState:
        return TxState(self)


class TxState:
    """One transaction's writes; ``commit`` folds them into the block, else they vanish."""

    def __init__(self, block: BlockState) -> None:
        self.block = block
        self.writes: dict[str, bytes | None] = {}

    def get(self, key: str) -> bytes | None:
        if key in self.writes:
            return self.writes[key]
        return self.block.get(key)

    def put(self, key: str, value: bytes | None) -> None:
        self.writes[key] = value

    def commit(self) -> None:
        self.block.writes.update(self.writes)


class HistoricalState:
    """Committed state as it was after block ``height`` (read-only)."""

    def __init__(self, store: HistoryReader, height: int) -> None:
        self.store, self.height = store, height

    def get_state(self, key: str) -> bytes | None:
        return self.store.get_states_at([key], self.height)[key]

    def get_states(self, keys: Sequence[str]) -> dict[str, bytes | None]:
        return self.store.get_states_at(keys, self.height)


class HistoryReader(Protocol):
    def get_states_at(self, keys: Sequence[str], height: int) -> dict[str, bytes | None]: ...


class MemoryState:
    """A dict of writes over an optional base state (the verifier's replay, tests)."""

    def __init__(self, base: StateReader | None = None) -> None:
        self.base = base
        self.data: dict[str, bytes | None] = {}
        self._base_reads: dict[str, bytes | None] = {}  # the base never changes: cache it

    def get_state(self, key: str) -> bytes | None:
        if key in self.data or self.base is None:
            return self.data.get(key)
        if key not in self._base_reads:
            self._base_reads[key] = self.base.get_state(key)
        return self._base_reads[key]

    def get_states(self, keys: Sequence[str]) -> dict[str, bytes | None]:
        out = {k: self.data.get(k) for k in keys}
        if self.base is not None:
            missing = [k for k in keys if k not in self.data and k not in self._base_reads]
            if missing:
                self._base_reads.update(self.base.get_states(missing))
            out.update((k, self._base_reads[k]) for k in keys if k not in self.data)
        return out

    def apply(self, writes: Mapping[str, bytes | None]) -> None:
        """Layer ``writes`` on top (a deletion is kept as None so it hides the base)."""
        self.data.update(writes)
        for k in self._base_reads.keys() & writes.keys():  # C loop over the smaller of the two
            del self._base_reads[k]
