"""The store interface every backend implements (SQLite now, PostgreSQL for the cluster).

A store keeps the genesis document, block headers, transactions with their results, the Merkle
log's perfect-subtree nodes, the full history of state writes, and signed checkpoints. ``commit``
writes one block and everything it changes atomically: after a crash a store holds either the
whole block or none of it. The behaviour is pinned by ``tests/contract/test_store_contract.py``,
which every backend must pass.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from medledger.errors import MedLedgerError
from medledger.ledger.merkle import node_id


class StoreError(MedLedgerError):
    """A store that cannot do what was asked (missing data, wrong chain, bad commit)."""


@dataclass(frozen=True, slots=True)
class TxRecord:
    index: int  # position in the transaction log (0-based)
    tx_id: bytes
    height: int
    raw: bytes  # canonical wire bytes
    result: bytes  # canonical result document


TxRow = tuple[int, bytes, int, bytes, bytes]  # a TxRecord's fields, in order


@dataclass(frozen=True, slots=True)
class StoredBlock:
    height: int
    hash: bytes
    header: bytes  # canonical header bytes
    first_index: int
    tx_count: int


@dataclass(frozen=True)
class BlockCommit:
    """Everything one block changes, committed in one atomic step."""

    block: StoredBlock
    txs: Sequence[TxRecord]
    writes: dict[str, bytes | None]
    nodes: Sequence[tuple[int, bytes]]  # new perfect Merkle nodes (node id, hash)
    compact: tuple[int, Sequence[bytes]]  # compact range after the block
    checkpoint: tuple[int, int, bytes] | None = None  # (log size, height, signed note)


class Store(ABC):
    """Abstract ledger store. Reads are safe from any thread; ``commit`` from one writer."""

    @abstractmethod
    def genesis(self) -> bytes | None:
        """The canonical genesis bytes, or None for an empty store."""

    @abstractmethod
    def init(self, genesis: bytes, block0: BlockCommit) -> None:
        """Write genesis and block 0; raises StoreError if the store is not empty."""

    @abstractmethod
    def commit(self, bc: BlockCommit) -> None:
        """Append the next block atomically; raises StoreError unless height == head + 1, and
        StoreError ``duplicate_tx`` (writing nothing) if a transaction id is already stored."""

    def stage(self, bc: BlockCommit) -> Callable[[], None]:
        """Write ``bc`` without making it durable yet; return the call that commits it.

        Lets a node execute the next block while this one's commit (its fsync) completes on
        another thread. Until that call returns, readers do not see the block. The default
        commits at once. The returned call must be made exactly once, before the next stage.
        """
        self.commit(bc)
        return lambda: None

    @abstractmethod
    def add_checkpoint(self, size: int, height: int, note: bytes) -> None:
        """Store a signed checkpoint note for log ``size`` (replacing one of the same size)."""

    @abstractmethod
    def head(self) -> StoredBlock | None: ...

    @abstractmethod
    def block(self, height: int) -> StoredBlock | None: ...

    @abstractmethod
    def blocks(self, start: int, stop: int) -> list[StoredBlock]:
        """Blocks with start <= height < stop, in order."""

    @abstractmethod
    def txs_range(self, start: int, stop: int) -> list[TxRecord]:
        """Transactions with log index start <= index < stop, in order."""

    def tx_rows(self, start: int, stop: int) -> list[TxRow]:
        """``txs_range`` as plain tuples ``(index, tx_id, height, raw, result)``: verify reads
        every transaction once and needs no record objects. The default converts
        ``txs_range``; a backend may return its rows as they come."""
        return [(r.index, r.tx_id, r.height, r.raw, r.result) for r in self.txs_range(start, stop)]

    @abstractmethod
    def tx(self, tx_id: bytes) -> TxRecord | None: ...

    @abstractmethod
    def known_txs(self, tx_ids: Sequence[bytes]) -> set[bytes]:
        """The subset of ``tx_ids`` already committed."""

    @abstractmethod
    def get_state(self, key: str) -> bytes | None:
        """The current value of ``key`` (None if absent or deleted)."""

    @abstractmethod
    def get_states(self, keys: Sequence[str]) -> dict[str, bytes | None]:
        """Current values of many keys in one round trip (absent keys map to None)."""

    @abstractmethod
    def state_at(self, key: str, height: int) -> tuple[int, bytes | None] | None:
        """(height written, value) of the newest write to ``key`` at or below ``height``."""

    @abstractmethod
    def get_states_at(self, keys: Sequence[str], height: int) -> dict[str, bytes | None]:
        """Values of many keys as of ``height`` (after that block), in one round trip."""

    @abstractmethod
    def scan_state(self, prefix: str, limit: int = 1000) -> list[tuple[str, bytes]]:
        """Current (key, value) pairs whose key starts with ``prefix``, in key order."""

    @abstractmethod
    def state_rows(self) -> Iterator[tuple[str, int, bytes | None]]:
        """Every stored state write (key, height, value) ordered by height, then key."""

    @abstractmethod
    def block_writes(self, height: int, keys: Sequence[str]) -> dict[str, bytes | None]:
        """Stored writes of block ``height`` for ``keys`` (a key without a row is absent;
        a deletion maps to None). Values are returned as stored (verify compares them byte
        for byte with the replayed writes)."""

    @abstractmethod
    def writes_range(self, start: int, stop: int) -> list[tuple[int, str, bytes | None]]:
        """Every stored write ``(height, key, value)`` of the blocks ``start <= height < stop``
        (a deletion has value None), ordered by height, then by key in code-point order — the
        order of the UTF-8 bytes, and the order ``state.writes_root`` sorts a block's writes in.
        Served from an index on ``(height, key)``, so its cost is the rows it returns."""

    @abstractmethod
    def row_counts(self) -> dict[str, int]:
        """Row counts of ``blocks``, ``txs``, ``state``, ``log_nodes`` and ``checkpoints``."""

    @abstractmethod
    def get_nodes(self, ids: Sequence[int]) -> list[bytes]:
        """Merkle node hashes by id (``merkle.node_id``); KeyError if one is missing."""

    def node_range(self, level: int, start: int, stop: int) -> list[bytes]:
        """Hashes of the stored nodes ``(level, i)`` for ``start <= i < stop``, in order;
        KeyError if one is missing. A level's ids are contiguous, so a backend can serve this
        as one range of ids (verify reads each block's new nodes so, level by level); the
        default asks ``get_nodes``."""
        return self.get_nodes([node_id(level, i) for i in range(start, stop)])

    @abstractmethod
    def node_rows(self, level: int) -> Iterator[tuple[int, bytes]]:
        """Stored Merkle nodes (index, hash) of one level, ordered by index."""

    @abstractmethod
    def compact(self) -> tuple[int, list[bytes]]:
        """The log's compact range (size, perfect-subtree roots) after the head block."""

    @abstractmethod
    def checkpoint(self, size: int | None = None) -> tuple[int, int, bytes] | None:
        """(size, height, note) of the checkpoint at ``size``, or the newest one."""

    @abstractmethod
    def checkpoints(self) -> list[tuple[int, int, bytes]]: ...

    # -- peer-local data: beside the ledger, not part of it --------------------------------

    @abstractmethod
    def set_local(self, key: str, value: bytes) -> None:
        """Store ``value`` under ``key`` (replacing any), durable when this returns.

        Peer-local bookkeeping, e.g. a witness's last cosigned checkpoint (persisted before the
        cosignature is released) or equivocation evidence. It is not ledger data: it is not in
        ``row_counts`` or any ledger table, and each call is its own committed transaction,
        never part of a block's (a failed block commit does not undo it). It may wait for a
        staged block's commit (SQLite allows one writer at a time), so do not call it between
        ``stage`` and the finisher on the thread that must run the finisher.
        """

    @abstractmethod
    def get_local(self, key: str) -> bytes | None:
        """The value last stored under ``key`` by ``set_local``, or None."""

    @abstractmethod
    def add_cosignatures(self, size: int, lines: Mapping[str, bytes]) -> None:
        """Store cosignatures of the checkpoint for log ``size``.

        ``lines`` maps a signer name to one C2SP signed-note signature line as bytes,
        em-dash prefix included (``"— name base64sig"``); the store does not interpret it. A
        signer already stored for ``size`` is replaced; all of ``lines`` commit together, in a
        transaction of their own. Unlike ``set_local`` the commit does not wait for the disk
        (a peer receives several cosignatures per block; each fsync would cost more than the
        block): a crash may lose the newest ones, which the peer collects again from the
        ordering service.
        """

    @abstractmethod
    def cosignatures(self, size: int) -> dict[str, bytes]:
        """Signature lines stored by ``add_cosignatures`` for log ``size``, by signer name
        in sorted order (empty when there are none)."""

    @abstractmethod
    def close(self) -> None: ...

    def opener(self) -> Callable[[], Store] | None:
        """A picklable callable that opens this store again in another process, or None when
        the store cannot be shared (e.g. a private in-memory database)."""
        return None
