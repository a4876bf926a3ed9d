"""Joining a running consortium from a cosigned snapshot instead of replaying the stream.

A snapshot is a copy of a peer's ledger up to some height, in one SQLite file, with the
witness cosignatures the peer collected (``export_snapshot``). Anyone may hand it over — another
organisation, a backup, an untrusted mirror — because the joining peer trusts none of it
(``join_from_snapshot``):

1. the snapshot's genesis must be the consortium's genesis;
2. a full ``verify`` replays every block of the snapshot (signatures, execution, roots, Merkle
   nodes, state history) and must find nothing wrong;
3. its newest checkpoint that is **final** — signed by a consortium key and cosigned by a quorum
   of the witnessing organisations, checked with the organisations' genesis keys — fixes how far
   the snapshot is taken; blocks above it are ignored;
4. only then are the blocks copied into the peer's own (empty) store, SQLite or PostgreSQL.

The peer then starts at that height and takes the rest from the ordering service. The ordering
stream therefore need not keep history from genesis for new peers. See ADR 0014.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

from medledger.consortium.genesis import Genesis
from medledger.contracts.base import Registry
from medledger.errors import Code, MedLedgerError
from medledger.ledger import merkle
from medledger.ledger.block import leaf_data_raw
from medledger.ledger.checkpoint import CheckpointError, parse_body, split_note
from medledger.ledger.cosignature import attach
from medledger.ledger.finality import ConsortiumKeys, FinalCheckpoint
from medledger.ledger.store.base import BlockCommit, Store
from medledger.ledger.store.sqlite import SQLiteStore
from medledger.ledger.verify import verify_store


class SnapshotError(MedLedgerError):
    """A snapshot that cannot be used (wrong chain, fails verification, nothing final)."""


def _writes_by_height(store: Store) -> Iterator[tuple[int, dict[str, bytes | None]]]:
    height, writes = -1, dict[str, bytes | None]()
    for key, h, value in store.state_rows():
        if h != height:
            if height >= 0:
                yield height, writes
            height, writes = h, {}
        writes[key] = value
    if height >= 0:
        yield height, writes


def copy_chain(src: Store, dst: Store, upto: int) -> None:
    """Write blocks 0..``upto`` of ``src`` into the empty ``dst`` (one commit per block), with
    checkpoints and cosignatures. Merkle nodes and compact ranges are recomputed from the
    transactions, so ``dst`` is consistent by construction with what ``src`` holds."""
    genesis = src.genesis()
    if genesis is None:
        raise SnapshotError(Code.NOT_FOUND, "the source store is empty")
    if dst.genesis() is not None:
        raise SnapshotError(Code.CONFLICT, "the target store is not empty")
    log = merkle.CompactRange()
    writes_iter = _writes_by_height(src)
    pending = next(writes_iter, None)
    for height in range(upto + 1):
        blk = src.block(height)
        if blk is None:
            raise SnapshotError(Code.NOT_FOUND, f"block {height} missing in the snapshot")
        txs = src.txs_range(blk.first_index, blk.first_index + blk.tx_count)
        nodes: list[tuple[int, bytes]] = []
        for rec in txs:
            nodes.extend(log.append(merkle.leaf_hash(leaf_data_raw(rec.tx_id, rec.height,
                                                                   rec.result))))
        writes: dict[str, bytes | None] = {}
        while pending is not None and pending[0] <= height:
            if pending[0] == height:
                writes = pending[1]
            pending = next(writes_iter, None)
        cp = src.checkpoint(log.size)
        checkpoint = cp if cp is not None and cp[1] == height else None
        commit = BlockCommit(blk, txs, writes, nodes, (log.size, log.to_hashes()), checkpoint)
        if height == 0:
            dst.init(genesis, commit)
            if checkpoint is not None:
                dst.add_checkpoint(*checkpoint)
        else:
            dst.commit(commit)
        if checkpoint is not None:
            lines = src.cosignatures(checkpoint[0])
            if lines:
                dst.add_cosignatures(checkpoint[0], lines)


def export_snapshot(store: Store, path: Path) -> int:
    """Copy ``store``'s chain (to its head) with cosignatures into a new SQLite file; the
    height exported."""
    if path.exists():
        raise SnapshotError(Code.ALREADY_EXISTS, f"{path} exists")
    head = store.head()
    if head is None:
        raise SnapshotError(Code.NOT_FOUND, "the store is empty")
    out = SQLiteStore(path)
    try:
        copy_chain(store, out, head.height)
    finally:
        out.close()
    return head.height


def newest_final(store: Store, keys: ConsortiumKeys, origin: str,
                 needed: int | None = None) -> tuple[int, FinalCheckpoint] | None:
    """(height, checkpoint) of the newest checkpoint in ``store`` that is final."""
    for size, height, note in sorted(store.checkpoints(), reverse=True):
        lines = store.cosignatures(size)
        if not lines:
            continue
        try:
            fin = FinalCheckpoint.verify(attach(note, [lines[k] for k in sorted(lines)]), keys,
                                         origin=origin, needed=needed)
        except CheckpointError:
            continue
        return height, fin
    return None


def join_from_snapshot(
    snapshot: Path,
    target: Store,
    genesis: Genesis,
    registry: Registry,
    *,
    witnesses: Mapping[str, bytes] | None = None,
    needed: int | None = None,
) -> int:
    """Check ``snapshot`` (see the module docstring) and copy it into the empty ``target`` up to
    its newest final checkpoint; the height the peer starts from. Nothing is written to
    ``target`` unless every check passed."""
    if target.genesis() is not None:
        raise SnapshotError(Code.CONFLICT, "the peer's store is not empty; a snapshot is only "
                            "for joining")
    if not snapshot.exists():
        raise SnapshotError(Code.NOT_FOUND, f"no snapshot at {snapshot}")
    src = SQLiteStore(snapshot)
    try:
        if src.genesis() != genesis.encoded:
            raise SnapshotError(Code.CONFLICT, "the snapshot is of another consortium's chain")
        report = verify_store(src, registry)
        if not report.ok:
            first = report.findings[0] if report.findings else None
            raise SnapshotError(Code.VERIFY_FAILED, "the snapshot does not verify"
                                + (f" at height {first.height}: {first.detail}" if first else ""))
        org_keys = genesis.org_keys()
        keys = ConsortiumKeys(log=org_keys, witnesses=dict(witnesses or org_keys))
        found = newest_final(src, keys, f"medledger/{genesis.chain_id}", needed)
        if found is None:
            raise SnapshotError(Code.VERIFY_FAILED, "the snapshot holds no final (quorum-"
                                "cosigned) checkpoint")
        height, fin = found
        blk = src.block(height)
        text = split_note(fin.note)[0]
        if blk is None or f"medledger-block {height} {blk.hash.hex()}" not in \
                parse_body(text).extensions:
            raise SnapshotError(Code.VERIFY_FAILED, f"final checkpoint does not name block "
                                f"{height} of the snapshot")
        copy_chain(src, target, height)
        return height
    finally:
        src.close()
