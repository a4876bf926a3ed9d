"""Read-side helpers over a node's store shared by the route modules.

Proofs are built straight from the store (``medledger.ledger.merkle``), not through
``Node.inclusion_proof``: the node's in-memory head is updated a moment after a block (and its
checkpoint) is durably committed, and a reader must never see a checkpoint it cannot prove
against. Every helper therefore reads the checkpoint first and the head after it.
"""

from __future__ import annotations

from typing import Any

import orjson

from medledger.errors import Code, MedLedgerError
from medledger.ledger import merkle
from medledger.ledger.block import BlockHeader, leaf_data
from medledger.ledger.store.base import Store, StoredBlock, TxRecord
from medledger.node.node import Receipt


def head_block(store: Store) -> StoredBlock:
    """The committed head block (a node's store always holds block 0)."""
    head = store.head()
    if head is None:
        raise MedLedgerError(Code.NODE_UNAVAILABLE, "store holds no chain")
    return head


def head_header(store: Store) -> BlockHeader:
    return BlockHeader.decode(head_block(store).header)


def with_cosignatures(store: Store, size: int, note: bytes) -> bytes:
    """``note`` with the witness cosignatures stored for ``size`` attached (cluster peers keep
    them; an embedded node has none and the note is unchanged)."""
    lines = store.cosignatures(size)
    if not lines:
        return note
    from medledger.ledger.cosignature import attach

    return attach(note, [lines[k] for k in sorted(lines)])


def proof_size(store: Store) -> tuple[int, bytes | None]:
    """(log size to prove against, its signed checkpoint note or None).

    The newest checkpoint when the node signs them, else the head's log size.
    """
    cp = store.checkpoint()
    if cp is not None:
        return cp[0], with_cosignatures(store, cp[0], cp[2])
    return head_header(store).log_size, None


def hexes(hashes: list[bytes]) -> list[str]:
    return [h.hex() for h in hashes]


def receipt_with_proof(store: Store, receipt: Receipt) -> dict[str, Any]:
    """``receipt.to_doc()`` plus ``proof`` (inclusion against the newest checkpoint) and
    ``checkpoint`` (that checkpoint's signed note, or None when the node signs none)."""
    doc = receipt.to_doc()
    size, note = proof_size(store)
    if size <= receipt.index:  # no checkpoint covers it yet: prove against the head
        size, note = head_header(store).log_size, None
    doc["proof"] = {
        "index": receipt.index,
        "size": size,
        "hashes": hexes(merkle.inclusion_proof(receipt.index, size, store)),
    }
    doc["checkpoint"] = None if note is None else note.decode("utf-8")
    return doc


def tx_doc(rec: TxRecord) -> dict[str, Any]:
    """Receipt, the transaction as parsed JSON, and its result document."""
    result = orjson.loads(rec.result)
    receipt = Receipt(
        rec.tx_id,
        rec.height,
        rec.index,
        result["code"],
        result["message"],
        result["value"],
        result["events"],
    )
    return {"receipt": receipt.to_doc(), "tx": orjson.loads(rec.raw), "result": result}


def tx_proof(store: Store, rec: TxRecord, size: int | None) -> dict[str, Any]:
    """Inclusion proof of ``rec`` in the log of ``size`` leaves (default: newest checkpoint)."""
    if size is None:
        size, note = proof_size(store)
    else:
        cp = store.checkpoint(size)
        note = None if cp is None else with_cosignatures(store, size, cp[2])
    log_size = head_header(store).log_size
    if not 0 <= rec.index < size <= log_size:
        raise MedLedgerError(
            Code.BAD_PROOF_REQUEST,
            f"need index {rec.index} < size {size} <= log size {log_size}",
        )
    leaf = merkle.leaf_hash(leaf_data(rec.tx_id, rec.height, orjson.loads(rec.result)))
    return {
        "tx_id": rec.tx_id.hex(),
        "index": rec.index,
        "size": size,
        "leaf_hash": leaf.hex(),
        "hashes": hexes(merkle.inclusion_proof(rec.index, size, store)),
        "root": merkle.tree_root(size, store).hex(),
        "checkpoint": None if note is None else note.decode("utf-8"),
    }


def consistency(store: Store, old: int, new: int | None) -> dict[str, Any]:
    """RFC 9162 consistency proof between log sizes ``old`` and ``new`` (default: newest
    checkpoint); needs ``0 < old <= new <= log size``."""
    if new is None:
        new = proof_size(store)[0]
    log_size = head_header(store).log_size
    if not 0 < old <= new <= log_size:
        raise MedLedgerError(
            Code.BAD_PROOF_REQUEST, f"need 0 < old {old} <= new {new} <= log size {log_size}"
        )
    return {
        "old": old,
        "new": new,
        "hashes": hexes(merkle.consistency_proof(old, new, store)),
        "old_root": merkle.tree_root(old, store).hex(),
        "new_root": merkle.tree_root(new, store).hex(),
    }


def block_doc(store: Store, block: StoredBlock) -> dict[str, Any]:
    """Header document, block hash and the ids of its transactions in order."""
    txs = store.txs_range(block.first_index, block.first_index + block.tx_count)
    return {
        "height": block.height,
        "hash": block.hash.hex(),
        "header": orjson.loads(block.header),
        "tx_ids": [t.tx_id.hex() for t in txs],
    }


def checkpoint_doc(cp: tuple[int, int, bytes]) -> dict[str, Any]:
    size, height, note = cp
    return {"size": size, "height": height, "note": note.decode("utf-8")}


def events_between(store: Store, start: int, stop: int) -> tuple[int, list[dict[str, Any]]]:
    """Events of valid transactions in blocks ``start <= height < stop``, in chain order.

    Returns (next height to read, events); each event is
    ``{"height", "tx_id", "index", "name", "data"}`` with ``index`` the transaction's log index.
    """
    blocks = store.blocks(start, stop)
    if not blocks:
        return start, []
    first = blocks[0].first_index
    last = blocks[-1].first_index + blocks[-1].tx_count
    out: list[dict[str, Any]] = []
    for rec in store.txs_range(first, last):
        result = orjson.loads(rec.result)
        if result["code"] != "ok":
            continue
        tx_hex = rec.tx_id.hex()
        for ev in result["events"]:
            out.append(
                {
                    "height": rec.height,
                    "tx_id": tx_hex,
                    "index": rec.index,
                    "name": ev["name"],
                    "data": ev["data"],
                }
            )
    return blocks[-1].height + 1, out
