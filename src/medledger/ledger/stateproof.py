"""Key-history (state) proofs: "after block h, key K had value V — or had none", checkable offline.

The state is not a Merkle map (ADR 0003): each header commits only to the writes of its own
block (``writes_root``, sorted by key). So a proof that K had V at height h is a piece of the
chain (ADR 0035):

* the headers from block ``w`` — the last block at or below h that wrote K — up to the block
  ``a >= h`` that a signed checkpoint names (``medledger-block a <hash>``), each header's
  ``prev`` the hash of the one before, the last one's hash, ``log_size`` and ``log_root`` those
  of the checkpoint;
* an RFC 9162 inclusion proof of the leaf ``encode_write(K, V)`` under ``writes_root(w)``;
* for every block ``w+1 .. h`` a proof that K is *not* among its writes: the block wrote
  nothing (``writes_root`` is the empty tree), or two adjacent leaves ``k1 < K < k2``, or the
  first leaf (``K < k1``) or the last (``kn < K``), each proven by inclusion;
* a key never written up to h starts at block 0 (the genesis state) instead, with a
  non-membership proof for every block ``0 .. h``.

So the proof grows with the number of blocks since K last changed (plus the blocks from h to
the checkpoint): ``max_blocks`` bounds it, and a request above the bound is refused with
``bad_proof_request``. The JSON document (hashes hex, values standard base64, ``null`` for no
value)::

    {"type": "medledger/state-proof/v1", "chain": "demo", "key": "consent/p/k1-…",
     "height": 41, "value": "eyJ…" | null, "written": 37 | null,
     "headers": [{header at 37 (or 0)}, …, {header at the checkpoint's block}],
     "write": {"index": 3, "size": 7, "hashes": [hex, …]} | null,
     "absent": [{"height": 38, "size": 0},
                {"height": 39, "size": 12,
                 "left": {"index": 4, "key": "…", "value": b64 | null, "hashes": [hex, …]},
                 "right": {"index": 5, …} | null}, …],
     "checkpoint": "<signed note, cosignatures attached>"}

``written`` is the height of the write that set the value (a deletion sets ``null``), or
``null`` when K was never written up to ``height``. ``medledger.client.stateproof`` verifies it
without a node.
"""

from __future__ import annotations

import base64
import bisect
import hashlib
from collections.abc import Sequence
from typing import Any

from medledger.errors import Code, MedLedgerError
from medledger.ledger import merkle
from medledger.ledger.block import BlockHeader
from medledger.ledger.state import encode_write
from medledger.ledger.store.base import Store

PROOF_TYPE = "medledger/state-proof/v1"
DEFAULT_MAX_BLOCKS = 1_000
"""Default bound on the headers in one proof (0.8–1.5 kB of JSON per block)."""
MAX_BLOCKS_LIMIT = 10_000
"""Largest ``max_blocks`` the HTTP API accepts: building reads and hashes every write of every
block in the span (some 2n SHA-256 for n writes: tens of ms for a block of 4,000 writes on the
2-core development VM), so this bounds one request's work."""

Writes = Sequence[tuple[str, bytes | None]]


def b64(value: bytes | None) -> str | None:
    return None if value is None else base64.b64encode(value).decode("ascii")


def hexes(hashes: Sequence[bytes]) -> list[str]:
    return [h.hex() for h in hashes]


class _BlockTree:
    """One block's writes tree, rebuilt level by level from its stored writes (sorted by key):
    neighbours are paired and an odd last node is carried up unchanged, which is exactly the
    RFC 9162 tree (``merkle.root_of``); every level is kept for the inclusion paths."""

    def __init__(self, writes: Writes) -> None:
        self.writes = list(writes)
        self.keys = [k for k, _ in self.writes]
        sha = hashlib.sha256  # inlined merkle.leaf_hash/node_hash: the hot loop of a proof
        level = [sha(b"\x00" + encode_write(k, v)).digest() for k, v in self.writes]
        self.levels = [level]
        while len(level) > 1:
            up = [sha(b"\x01" + level[i] + level[i + 1]).digest()
                  for i in range(0, len(level) - 1, 2)]
            if len(level) % 2:
                up.append(level[-1])
            self.levels.append(up)
            level = up

    @property
    def size(self) -> int:
        return len(self.keys)

    def root(self) -> bytes:
        return self.levels[-1][0] if self.keys else merkle.EMPTY_ROOT

    def path(self, index: int) -> list[bytes]:
        """PATH(index) of RFC 9162 §2.1.3.1, leaf to root: a carried node has no sibling."""
        out = []
        for level in self.levels[:-1]:
            if index ^ 1 < len(level):
                out.append(level[index ^ 1])
            index >>= 1
        return out

    def leaf_doc(self, index: int) -> dict[str, Any]:
        key, value = self.writes[index]
        return {"index": index, "key": key, "value": b64(value),
                "hashes": hexes(self.path(index))}

    def find(self, key: str) -> int:
        """Index where ``key`` is or would be inserted."""
        return bisect.bisect_left(self.keys, key)

    def presence(self, key: str) -> dict[str, Any]:
        i = self.find(key)
        if i == self.size or self.keys[i] != key:
            raise KeyError(key)
        return {"index": i, "size": self.size, "hashes": hexes(self.path(i))}

    def absence(self, key: str, height: int) -> dict[str, Any]:
        """Non-membership of ``key``: the neighbours it would sit between (or the empty tree)."""
        if self.size == 0:
            return {"height": height, "size": 0}
        i = self.find(key)
        if i < self.size and self.keys[i] == key:
            raise KeyError(key)
        return {"height": height, "size": self.size,
                "left": self.leaf_doc(i - 1) if i > 0 else None,
                "right": self.leaf_doc(i) if i < self.size else None}


def _corrupt(message: str) -> MedLedgerError:
    return MedLedgerError(Code.STORE_CORRUPT, message)


def _anchor(store: Store, height: int, size: int | None) -> tuple[int, int, bytes]:
    """The checkpoint to prove against: of log ``size``, else the one signed for block
    ``height`` (or, should that size's note name a later empty block, that one), else the
    newest. Its block must be at or above ``height``."""
    if size is not None:
        cp = store.checkpoint(size)
        if cp is None:
            raise MedLedgerError(Code.NOT_FOUND, f"no checkpoint for log size {size}")
    else:
        blk = store.block(height)
        if blk is None:
            raise MedLedgerError(Code.UNKNOWN_BLOCK, f"no block at height {height}")
        cp = store.checkpoint(BlockHeader.decode(blk.header).log_size)
        if cp is None or cp[1] < height:
            cp = store.checkpoint()
    if cp is None or cp[1] < height:
        raise MedLedgerError(Code.BAD_PROOF_REQUEST, f"no signed checkpoint covers height "
                             f"{height}{'' if size is None else f' at log size {size}'}")
    return cp


def _with_cosignatures(store: Store, size: int, note: bytes) -> bytes:
    lines = store.cosignatures(size)
    if not lines:
        return note
    from medledger.ledger.cosignature import attach

    return attach(note, [lines[k] for k in sorted(lines)])


def build_state_proof(
    store: Store,
    key: str,
    height: int | None = None,
    *,
    size: int | None = None,
    max_blocks: int = DEFAULT_MAX_BLOCKS,
) -> dict[str, Any]:
    """The state proof of ``key`` after block ``height`` (default: the newest checkpoint's
    block), against the checkpoint of log ``size`` (default: the one signed for that block).

    Raises ``unknown_block`` for a height above the head, ``not_found`` for an unknown
    checkpoint size, ``bad_proof_request`` when no checkpoint covers the height or the proof
    would hold more than ``max_blocks`` headers, ``store_corrupt`` when stored writes do not
    rebuild a header's ``writes_root``.
    """
    if max_blocks < 1:
        raise MedLedgerError(Code.BAD_PROOF_REQUEST, f"max_blocks {max_blocks} must be >= 1")
    if height is None:
        newest = store.checkpoint(size)
        if newest is None:
            raise MedLedgerError(Code.NOT_FOUND, "no signed checkpoint" + (
                "" if size is None else f" for log size {size}"))
        height = newest[1]
    head = store.head()
    if head is None or not 0 <= height <= head.height:
        raise MedLedgerError(Code.UNKNOWN_BLOCK, f"height {height} is not in [0, "
                             f"{-1 if head is None else head.height}]")
    cp_size, anchor, note = _anchor(store, height, size)
    found = store.state_at(key, height)
    written, value = (None, None) if found is None else found
    start = 0 if written is None else written
    count = anchor - start + 1
    if count > max_blocks:
        since = "was never written" if written is None else f"was last written at {written}"
        raise MedLedgerError(Code.BAD_PROOF_REQUEST, (
            f"proof of {key!r} at height {height} needs {count} block headers ({key!r} {since}; "
            f"checkpoint at block {anchor}), more than max_blocks {max_blocks}"))
    blocks = store.blocks(start, anchor + 1)
    if [b.height for b in blocks] != list(range(start, anchor + 1)):
        raise _corrupt(f"blocks {start}..{anchor} are not all stored")
    headers = [BlockHeader.decode(b.header) for b in blocks]
    by_height: dict[int, list[tuple[str, bytes | None]]] = {h: [] for h in range(start,
                                                                                height + 1)}
    for h, k, v in store.writes_range(start, height + 1):
        by_height[h].append((k, v))

    write: dict[str, Any] | None = None
    absent: list[dict[str, Any]] = []
    for h in range(start, height + 1):
        tree = _BlockTree(sorted(by_height.pop(h)))
        if tree.root() != headers[h - start].writes_root:
            raise _corrupt(f"stored writes of block {h} do not give its writes_root")
        try:
            if written is not None and h == written:
                write = tree.presence(key)
            else:
                absent.append(tree.absence(key, h))
        except KeyError:
            raise _corrupt(f"block {h}'s writes disagree with the state history of "
                           f"{key!r}") from None
    return {
        "type": PROOF_TYPE,
        "chain": headers[0].chain,
        "key": key,
        "height": height,
        "value": b64(value),
        "written": written,
        "headers": [h.to_doc() for h in headers],
        "write": write,
        "absent": absent,
        "checkpoint": _with_cosignatures(store, cp_size, note).decode("utf-8"),
    }
