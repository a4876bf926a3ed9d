"""RFC 9162 §2.1 Merkle tree hashing, proofs, and the compact state of an append-only log.

Hashes are SHA-256 (RFC 9162 §2.1.1): ``MTH({}) = SHA-256()``, a leaf is
``SHA-256(0x00 || d)`` and an interior node ``SHA-256(0x01 || left || right)``.

Node addressing. A *perfect* subtree of ``2**level`` leaves whose leftmost leaf is
``index * 2**level`` is the node ``(level, index)``; level-0 nodes are leaf hashes. Its id is
``node_id(level, index) = (level << 56) | index`` (so ``index < 2**56`` and ``level < 128`` keep
ids in a signed 64-bit SQLite integer). Only perfect nodes are stored: every subtree used by
RFC 9162's MTH/PATH/SUBPROOF recursion covers leaves ``[lo, hi)`` with ``lo`` a multiple of the
smallest power of two ``>= hi - lo``, so it is the right fold of the perfect nodes tiling that
range (:func:`range_node_ids`). A non-perfect (ephemeral) right-edge subtree is recomputed that
way; a proof therefore needs one batched read of O(log n) stored nodes.

Verification follows the algorithms of §2.1.3.2 and §2.1.4.2, with the edge cases of
transparency-dev/merkle: consistency needs ``0 < size1 <= size2``; equal sizes need an empty
proof and equal roots. Every failure raises :class:`ProofError` with a stable ``code``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import Protocol

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()
_LEVEL_SHIFT = 56
_INDEX_MASK = (1 << _LEVEL_SHIFT) - 1


def leaf_hash(data: bytes) -> bytes:
    """Leaf hash ``SHA-256(0x00 || data)`` (RFC 9162 §2.1.1)."""
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Interior node hash ``SHA-256(0x01 || left || right)`` (RFC 9162 §2.1.1)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


class ProofError(ValueError):
    """A proof request or proof that is invalid; ``code`` is stable, the message is got/want."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def node_id(level: int, index: int) -> int:
    """Id of the perfect node ``(level, index)``; ``0 <= level < 128``, ``0 <= index < 2**56``."""
    if not 0 <= level < 128 or not 0 <= index <= _INDEX_MASK:
        raise ValueError(f"node (level={level}, index={index}) is out of range")
    return (level << _LEVEL_SHIFT) | index


def split_node_id(nid: int) -> tuple[int, int]:
    """Inverse of :func:`node_id`: ``(level, index)``."""
    if nid < 0:
        raise ValueError(f"node id {nid} is negative")
    return nid >> _LEVEL_SHIFT, nid & _INDEX_MASK


class NodeReader(Protocol):
    """Read access to stored perfect-node hashes (level 0 = leaf hashes)."""

    def get_nodes(self, ids: Sequence[int]) -> list[bytes]:
        """Hashes of ``ids`` in the same order; raises ``KeyError`` if any is not stored."""
        ...


def range_node_ids(begin: int, end: int) -> list[int]:
    """Ids of the perfect nodes that tile leaves ``[begin, end)``, left to right (largest first).

    Requires ``0 <= begin <= end``. When ``begin`` is a multiple of the smallest power of two
    ``>= end - begin`` (true of every RFC 9162 subtree), :func:`fold_nodes` of their hashes is
    ``MTH(D[begin:end])``.
    """
    if not 0 <= begin <= end:
        raise ValueError(f"bad leaf range [{begin}, {end})")
    ids: list[int] = []
    while begin < end:
        level = (end - begin).bit_length() - 1
        if begin:
            level = min(level, (begin & -begin).bit_length() - 1)
        ids.append((level << _LEVEL_SHIFT) | (begin >> level))
        begin += 1 << level
    return ids


def fold_nodes(hashes: Sequence[bytes]) -> bytes:
    """Right fold ``h0 ⊕ (h1 ⊕ (… ⊕ hk))`` of perfect-node hashes; ``EMPTY_ROOT`` if empty."""
    if not hashes:
        return EMPTY_ROOT
    acc = hashes[-1]
    for i in range(len(hashes) - 2, -1, -1):
        acc = node_hash(hashes[i], acc)
    return acc


def _split(n: int) -> int:
    """RFC 9162 §2.1.1 ``k``: the largest power of two smaller than ``n`` (``n >= 2``)."""
    return 1 << ((n - 1).bit_length() - 1)


def _inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """Leaf ranges of the PATH(index, D[0:size]) entries (§2.1.3.1), leaf to root."""
    ranges: list[tuple[int, int]] = []
    lo, hi = 0, size
    while hi - lo > 1:
        mid = lo + _split(hi - lo)
        if index < mid:
            ranges.append((mid, hi))
            hi = mid
        else:
            ranges.append((lo, mid))
            lo = mid
    ranges.reverse()
    return ranges


def _consistency_ranges(size1: int, size2: int) -> list[tuple[int, int]]:
    """Leaf ranges of the PROOF(size1, D[0:size2]) entries (§2.1.4.1); ``0 < size1 <= size2``."""
    ranges: list[tuple[int, int]] = []
    lo, hi, whole = 0, size2, True
    while size1 != hi:
        mid = lo + _split(hi - lo)
        if size1 <= mid:
            ranges.append((mid, hi))
            hi = mid
        else:
            ranges.append((lo, mid))
            lo, whole = mid, False
    if not whole:
        ranges.append((lo, hi))
    ranges.reverse()
    return ranges


def _build(ranges: list[tuple[int, int]], reader: NodeReader) -> list[bytes]:
    """Fetch every node of ``ranges`` in one ``get_nodes`` call, then fold each range."""
    groups = [range_node_ids(lo, hi) for lo, hi in ranges]
    ids = [nid for group in groups for nid in group]
    if not ids:
        return []
    hashes = reader.get_nodes(ids)
    if len(hashes) != len(ids):
        raise KeyError(f"get_nodes returned {len(hashes)} hashes, want {len(ids)}")
    proof: list[bytes] = []
    pos = 0
    for group in groups:
        n = len(group)
        proof.append(hashes[pos] if n == 1 else fold_nodes(hashes[pos : pos + n]))
        pos += n
    return proof


def inclusion_proof(index: int, size: int, reader: NodeReader) -> list[bytes]:
    """PATH(index, D[0:size]) (RFC 9162 §2.1.3.1) from stored nodes; requires ``0 <= index < size``.

    ``reader`` must hold every perfect node of the first ``size`` leaves (else ``KeyError``).
    """
    if not 0 <= index < size:
        raise ProofError("bad_index", f"leaf index {index} is not in [0, {size})")
    return _build(_inclusion_ranges(index, size), reader)


def consistency_proof(size1: int, size2: int, reader: NodeReader) -> list[bytes]:
    """PROOF(size1, D[0:size2]) (RFC 9162 §2.1.4.1); requires ``0 < size1 <= size2``.

    Equal sizes give ``[]``. ``reader`` must hold the first ``size2`` leaves' nodes.
    """
    if not 0 < size1 <= size2:
        raise ProofError("bad_size", f"need 0 < size1 <= size2, got size1={size1} size2={size2}")
    return _build(_consistency_ranges(size1, size2), reader)


def tree_root(size: int, reader: NodeReader) -> bytes:
    """MTH(D[0:size]) (RFC 9162 §2.1.1) from stored nodes, for any stored ``size >= 0``."""
    return fold_nodes(reader.get_nodes(range_node_ids(0, size))) if size else EMPTY_ROOT


def _check_hash(value: bytes, code: str, what: str) -> None:
    if len(value) != HASH_SIZE:
        raise ProofError(code, f"{what} is {len(value)} bytes, want {HASH_SIZE}")


def _check_proof(proof: Sequence[bytes], want: int) -> None:
    if len(proof) != want:
        raise ProofError("wrong_proof_length", f"proof has {len(proof)} hashes, want {want}")
    for i, h in enumerate(proof):
        _check_hash(h, "bad_proof_hash", f"proof[{i}]")


def root_from_inclusion(leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes]) -> bytes:
    """Root implied by an inclusion proof (RFC 9162 §2.1.3.2 steps 1-4); ``0 <= index < size``."""
    if size < 0 or index < 0:
        raise ProofError("bad_size", f"index {index} and size {size} must be non-negative")
    if index >= size:
        raise ProofError("bad_index", f"leaf index {index} is not in [0, {size})")
    _check_hash(leaf_hash, "bad_leaf_hash", "leaf hash")
    inner = (index ^ (size - 1)).bit_length()
    _check_proof(proof, inner + (index >> inner).bit_count())
    fn, sn, r = index, size - 1, leaf_hash
    for p in proof:
        if sn == 0:  # unreachable once the length matched; kept as the RFC states it
            raise ProofError("wrong_proof_length", "proof is longer than the path")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise ProofError("wrong_proof_length", "proof is shorter than the path")
    return r


def verify_inclusion(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that ``leaf_hash`` is leaf ``index`` of the tree ``(size, root)`` (§2.1.3.2)."""
    got = root_from_inclusion(leaf_hash, index, size, proof)
    if got != root:
        raise ProofError("root_mismatch", f"computed root {got.hex()}, want {root.hex()}")


def verify_consistency(
    size1: int, size2: int, root1: bytes, root2: bytes, proof: Sequence[bytes]
) -> None:
    """Check that tree ``(size2, root2)`` extends ``(size1, root1)`` (RFC 9162 §2.1.4.2).

    Requires ``0 < size1 <= size2``; equal sizes need an empty proof and ``root1 == root2``.
    """
    if size1 < 0 or size2 < size1:
        raise ProofError("bad_size", f"need 0 <= size1 <= size2, got {size1} and {size2}")
    if size1 == 0:
        raise ProofError("bad_size", "consistency proof from the empty tree is meaningless")
    if size1 == size2:
        _check_proof(proof, 0)
        if root1 != root2:
            raise ProofError("root_mismatch", f"root2 {root2.hex()}, want root1 {root1.hex()}")
        return
    inner = ((size1 - 1) ^ (size2 - 1)).bit_length()
    border = ((size1 - 1) >> inner).bit_count()
    shift = (size1 & -size1).bit_length() - 1
    pow2 = size1 == 1 << shift
    _check_proof(proof, inner - shift + border + (0 if pow2 else 1))
    path = [root1, *proof] if pow2 else list(proof)
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:  # unreachable once the length matched; kept as the RFC states it
            raise ProofError("wrong_proof_length", "proof is longer than the path")
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while not fn & 1 and fn:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise ProofError("wrong_proof_length", "proof is shorter than the path")
    if fr != root1:
        raise ProofError("root_mismatch", f"computed root1 {fr.hex()}, want {root1.hex()}")
    if sr != root2:
        raise ProofError("root_mismatch", f"computed root2 {sr.hex()}, want {root2.hex()}")


class CompactRange:
    """O(log n) state of an append-only log: roots of the perfect subtrees tiling ``[0, size)``.

    ``hashes[i]`` is the node ``range_node_ids(0, size)[i]`` (largest first), one per set bit
    of ``size``.
    """

    __slots__ = ("_hashes", "_size")

    def __init__(self) -> None:
        self._size = 0
        self._hashes: list[bytes] = []

    @property
    def size(self) -> int:
        return self._size

    def append(self, leaf_hash: bytes) -> list[tuple[int, bytes]]:
        """Add a leaf; return ``(node_id, hash)`` of every perfect node it completes, leaf first."""
        if len(leaf_hash) != HASH_SIZE:
            raise ValueError(f"leaf hash is {len(leaf_hash)} bytes, want {HASH_SIZE}")
        index, h, level = self._size, leaf_hash, 0
        done = [(index, h)]
        while (index >> level) & 1:
            h = node_hash(self._hashes.pop(), h)
            level += 1
            done.append(((level << _LEVEL_SHIFT) | (index >> level), h))
        self._hashes.append(h)
        self._size = index + 1
        return done

    def root(self) -> bytes:
        """MTH of the ``size`` leaves (RFC 9162 §2.1.1); ``EMPTY_ROOT`` when empty."""
        return fold_nodes(self._hashes)

    def node_ids(self) -> list[int]:
        """Ids of the nodes held, aligned with :meth:`to_hashes`."""
        return range_node_ids(0, self._size)

    def to_hashes(self) -> list[bytes]:
        return list(self._hashes)

    @classmethod
    def from_hashes(cls, size: int, hashes: Iterable[bytes]) -> CompactRange:
        """Restore from :meth:`to_hashes`; needs one 32-byte hash per set bit of ``size``."""
        items = list(hashes)
        if size < 0 or len(items) != size.bit_count():
            raise ValueError(
                f"size {size} needs {max(size, 0).bit_count()} hashes, got {len(items)}"
            )
        if any(len(h) != HASH_SIZE for h in items):
            raise ValueError(f"every hash must be {HASH_SIZE} bytes")
        cr = cls()
        cr._size, cr._hashes = size, items
        return cr

    @classmethod
    def from_reader(cls, size: int, reader: NodeReader) -> CompactRange:
        """Restore the state at ``size`` from stored nodes (one ``get_nodes`` call)."""
        ids = range_node_ids(0, size)
        return cls.from_hashes(size, reader.get_nodes(ids) if ids else [])


class MemoryNodeStore:
    """In-memory :class:`NodeReader` for tests and verifiers, filled by :meth:`append`."""

    def __init__(self) -> None:
        self._nodes: dict[int, bytes] = {}
        self._range = CompactRange()

    @property
    def size(self) -> int:
        return self._range.size

    def append(self, leaf_hash: bytes) -> int:
        """Append a leaf hash, store the nodes it completes, return its index."""
        index = self._range.size
        self._nodes.update(self._range.append(leaf_hash))
        return index

    def extend(self, leaf_hashes: Iterable[bytes]) -> None:
        for h in leaf_hashes:
            self.append(h)

    def root(self) -> bytes:
        return self._range.root()

    def get_nodes(self, ids: Sequence[int]) -> list[bytes]:
        return [self._nodes[i] for i in ids]

    def node_ids(self) -> set[int]:
        """Ids of every stored node."""
        return set(self._nodes)


def root_of(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH over leaves given by their hashes, computed level by level: pairing neighbours and
    carrying an odd last node up unchanged builds exactly the RFC 9162 §2.1.1 tree (its left
    subtrees are the largest powers of two)."""
    level = list(leaf_hashes)
    if not level:
        return EMPTY_ROOT
    while len(level) > 1:
        nxt = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def reference_root(leaves: Sequence[bytes]) -> bytes:
    """MTH(D[n]) over leaf *data*, recursively as RFC 9162 §2.1.1 defines it (slow, for tests)."""
    n = len(leaves)
    if n == 0:
        return EMPTY_ROOT
    if n == 1:
        return leaf_hash(leaves[0])
    k = _split(n)
    return node_hash(reference_root(leaves[:k]), reference_root(leaves[k:]))


def reference_inclusion_proof(index: int, leaves: Sequence[bytes]) -> list[bytes]:
    """PATH(m, D[n]) over leaf data, recursively as RFC 9162 §2.1.3.1 (slow, for tests)."""
    n = len(leaves)
    if not 0 <= index < n:
        raise ProofError("bad_index", f"leaf index {index} is not in [0, {n})")
    if n == 1:
        return []
    k = _split(n)
    if index < k:
        return [*reference_inclusion_proof(index, leaves[:k]), reference_root(leaves[k:])]
    return [*reference_inclusion_proof(index - k, leaves[k:]), reference_root(leaves[:k])]


def reference_consistency_proof(size1: int, leaves: Sequence[bytes]) -> list[bytes]:
    """PROOF(m, D[n]) = SUBPROOF(m, D[n], true), as RFC 9162 §2.1.4.1; ``0 < m <= n``."""
    if not 0 < size1 <= len(leaves):
        raise ProofError("bad_size", f"need 0 < size1 <= {len(leaves)}, got {size1}")
    return _reference_subproof(size1, leaves, True)


def _reference_subproof(m: int, leaves: Sequence[bytes], whole: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if whole else [reference_root(leaves)]
    k = _split(n)
    if m <= k:
        return [*_reference_subproof(m, leaves[:k], whole), reference_root(leaves[k:])]
    return [*_reference_subproof(m - k, leaves[k:], False), reference_root(leaves[:k])]
