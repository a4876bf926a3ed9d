"""Sealing blocks: from executed transactions to a header, log nodes and a store commit.

``seal`` is shared by the node (which commits its output) and the verifier (which recomputes it
from stored transactions and compares), so both derive headers the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from medledger.ledger import merkle
from medledger.ledger.block import BlockHeader, leaf_data_raw
from medledger.ledger.execute import Executed
from medledger.ledger.state import next_state_root, writes_root
from medledger.ledger.store.base import BlockCommit, StoredBlock, TxRecord


@dataclass(frozen=True)
class Sealed:
    header: BlockHeader
    commit: BlockCommit


def seal(
    *,
    chain: str,
    height: int,
    time: int,
    prev_hash: bytes,
    prev_state_root: bytes,
    log: merkle.CompactRange,
    tx_ids: Sequence[bytes],
    raws: Sequence[bytes],
    executed: Executed,
    records: bool = True,
) -> Sealed:
    """Append the block's leaves to ``log`` (mutated) and build header and commit.

    ``records=False`` leaves the commit's ``txs`` empty (and ``raws`` unread): the verifier
    compares headers, writes and nodes with the stored ones and never stores transactions."""
    first = log.size
    nodes: list[tuple[int, bytes]] = []
    append, leaf_hash = log.append, merkle.leaf_hash
    for tid, result in zip(tx_ids, executed.encoded, strict=True):
        nodes.extend(append(leaf_hash(leaf_data_raw(tid, height, result))))
    txs = [TxRecord(first + i, tid, height, raw, result) for i, (tid, raw, result)
           in enumerate(zip(tx_ids, raws, executed.encoded, strict=True))] if records else []
    w_root = writes_root(executed.writes)
    header = BlockHeader(
        chain=chain, height=height, prev=prev_hash, time=time, txs=len(tx_ids),
        log_size=log.size, log_root=log.root(), writes_root=w_root,
        state_root=next_state_root(prev_state_root, w_root),
    )
    raw_header = header.encode()
    block = StoredBlock(height, header.hash, raw_header, first, len(tx_ids))
    commit = BlockCommit(block, txs, dict(executed.writes), nodes,
                         (log.size, log.to_hashes()))
    return Sealed(header, commit)
