"""Fast Merkle proofs and compact ranges cross-checked against the RFC 9162 reference recursion."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medledger.ledger.merkle import (
    EMPTY_ROOT,
    CompactRange,
    MemoryNodeStore,
    ProofError,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    node_id,
    range_node_ids,
    reference_consistency_proof,
    reference_inclusion_proof,
    reference_root,
    root_from_inclusion,
    root_of,
    split_node_id,
    tree_root,
    verify_consistency,
    verify_inclusion,
)

MAX = 70
DATA = [f"leaf-{i}".encode() for i in range(MAX)]


def _store(data: Sequence[bytes]) -> MemoryNodeStore:
    store = MemoryNodeStore()
    store.extend(leaf_hash(d) for d in data)
    return store


STORE = _store(DATA)
ROOTS = [reference_root(DATA[:n]) for n in range(MAX + 1)]


class CountingReader:
    """Wraps a store and records every ``get_nodes`` call."""

    def __init__(self, inner: MemoryNodeStore) -> None:
        self.inner = inner
        self.calls: list[list[int]] = []

    def get_nodes(self, ids: Sequence[int]) -> list[bytes]:
        self.calls.append(list(ids))
        return self.inner.get_nodes(ids)


def _flip(b: bytes, bit: int) -> bytes:
    out = bytearray(b)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def test_hash_primitives() -> None:
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    # RFC 6962 test leaf "" as used by transparency-dev/merkle.
    assert leaf_hash(b"").hex().startswith("6e340b9cffb37a98")
    assert node_hash(b"a" * 32, b"b" * 32) != node_hash(b"b" * 32, b"a" * 32)


def test_node_id_round_trip_and_bounds() -> None:
    for level, index in [(0, 0), (0, 5), (3, 7), (56, 1), (127, (1 << 56) - 1)]:
        assert split_node_id(node_id(level, index)) == (level, index)
    assert node_id(127, (1 << 56) - 1) == 2**63 - 1  # fits a signed 64-bit integer
    for bad in [(-1, 0), (128, 0), (0, -1), (0, 1 << 56)]:
        with pytest.raises(ValueError):
            node_id(*bad)
    with pytest.raises(ValueError):
        split_node_id(-1)


@pytest.mark.parametrize("size", range(MAX + 1))
def test_roots_match_reference(size: int) -> None:
    assert tree_root(size, STORE) == ROOTS[size]
    cr = CompactRange()
    for d in DATA[:size]:
        cr.append(leaf_hash(d))
    assert cr.size == size
    assert cr.root() == ROOTS[size]


@pytest.mark.parametrize("size", range(1, MAX + 1))
def test_inclusion_matches_reference_for_every_index(size: int) -> None:
    for index in range(size):
        reader = CountingReader(STORE)
        proof = inclusion_proof(index, size, reader)
        assert proof == reference_inclusion_proof(index, DATA[:size])
        assert len(reader.calls) == (1 if proof else 0)
        leaf = leaf_hash(DATA[index])
        assert root_from_inclusion(leaf, index, size, proof) == ROOTS[size]
        verify_inclusion(leaf, index, size, proof, ROOTS[size])


@pytest.mark.parametrize("size2", range(1, MAX + 1))
def test_consistency_matches_reference_for_every_pair(size2: int) -> None:
    for size1 in range(1, size2 + 1):
        reader = CountingReader(STORE)
        proof = consistency_proof(size1, size2, reader)
        assert proof == reference_consistency_proof(size1, DATA[:size2])
        assert len(reader.calls) == (1 if proof else 0)
        verify_consistency(size1, size2, ROOTS[size1], ROOTS[size2], proof)
        if size1 < size2:
            with pytest.raises(ProofError, match="root_mismatch"):
                verify_consistency(size1, size2, ROOTS[size1 - 1], ROOTS[size2], proof)


def test_builder_rejects_bad_requests() -> None:
    for index, size in [(0, 0), (5, 5), (-1, 3)]:
        with pytest.raises(ProofError) as e:
            inclusion_proof(index, size, STORE)
        assert e.value.code == "bad_index"
    for size1, size2 in [(0, 0), (0, 5), (6, 5), (-1, 2)]:
        with pytest.raises(ProofError) as e:
            consistency_proof(size1, size2, STORE)
        assert e.value.code == "bad_size"
    with pytest.raises(KeyError):  # more leaves than stored
        inclusion_proof(0, MAX + 1, STORE)
    with pytest.raises(KeyError):
        consistency_proof(3, MAX + 1, STORE)


def test_ephemeral_node_fetched_as_its_perfect_parts() -> None:
    reader = CountingReader(STORE)
    proof = inclusion_proof(0, 7, reader)  # sibling [4, 7) is not perfect
    assert reader.calls == [[node_id(0, 1), node_id(1, 1), node_id(1, 2), node_id(0, 6)]]
    assert proof[-1] == reference_root(DATA[4:7])


def test_range_node_ids_tiles_the_range() -> None:
    assert range_node_ids(0, 0) == []
    assert range_node_ids(0, 13) == [node_id(3, 0), node_id(2, 2), node_id(0, 12)]
    assert range_node_ids(6, 11) == [node_id(1, 3), node_id(1, 4), node_id(0, 10)]
    with pytest.raises(ValueError):
        range_node_ids(3, 2)


def test_verify_consistency_edge_cases() -> None:
    r1, r5 = ROOTS[1], ROOTS[5]
    verify_consistency(1, 1, r1, r1, [])
    cases = [
        ((0, 0, EMPTY_ROOT, EMPTY_ROOT, []), "bad_size"),  # from the empty tree: meaningless
        ((0, 5, EMPTY_ROOT, r5, []), "bad_size"),
        ((5, 1, r5, r1, []), "bad_size"),
        ((1, 1, r1, r5, []), "root_mismatch"),
        ((1, 1, r1, r1, [r1]), "wrong_proof_length"),
        ((1, 5, r1, r5, []), "wrong_proof_length"),
        ((1, 5, r1, r5, [b"short"] * 3), "bad_proof_hash"),
    ]
    for args, code in cases:
        with pytest.raises(ProofError) as e:
            verify_consistency(*args)
        assert e.value.code == code, args


def test_verify_inclusion_input_checks() -> None:
    leaf = leaf_hash(DATA[0])
    for args, code in [
        ((leaf, 0, 0, [], EMPTY_ROOT), "bad_index"),
        ((leaf, 2, 1, [], leaf), "bad_index"),
        ((leaf, -1, 1, [], leaf), "bad_size"),
        ((b"", 0, 1, [], leaf), "bad_leaf_hash"),
        ((leaf, 0, 1, [leaf], leaf), "wrong_proof_length"),
        ((leaf, 0, 2, [], leaf), "wrong_proof_length"),
    ]:
        with pytest.raises(ProofError) as e:
            verify_inclusion(*args)
        assert e.value.code == code, args
    # got/want message
    with pytest.raises(ProofError, match=r"proof has 0 hashes, want 1"):
        verify_inclusion(leaf, 0, 2, [], ROOTS[2])


def test_size_is_bound_by_the_root_not_by_the_proof() -> None:
    # RFC 9162 inclusion proofs do not encode the tree size: the index-0 proof for size 3 also
    # "verifies" as size 4 against the same root. Callers must take (size, root) together from
    # one verified checkpoint.
    proof = inclusion_proof(0, 3, STORE)
    verify_inclusion(leaf_hash(DATA[0]), 0, 4, proof, ROOTS[3])


@pytest.mark.parametrize("size", range(MAX + 1))
def test_compact_range_emits_exactly_the_perfect_subtrees(size: int) -> None:
    cr = CompactRange()
    emitted: dict[int, bytes] = {}
    for i, d in enumerate(DATA[:size]):
        done = cr.append(leaf_hash(d))
        assert done[0] == (node_id(0, i), leaf_hash(d))
        for nid, h in done:
            assert nid not in emitted
            emitted[nid] = h
    perfect = {
        node_id(level, idx): reference_root(DATA[idx << level : (idx + 1) << level])
        for level in range(8)
        for idx in range(size >> level)
    }
    assert emitted == perfect
    assert cr.node_ids() == range_node_ids(0, size)
    assert dict(zip(cr.node_ids(), cr.to_hashes(), strict=True)).items() <= perfect.items()


def _compact(n: int) -> CompactRange:
    cr = CompactRange()
    for d in DATA[:n]:
        cr.append(leaf_hash(d))
    return cr


@pytest.mark.parametrize("size", range(0, MAX - 5, 3))
def test_compact_range_persistence_round_trip(size: int) -> None:
    saved = _compact(size).to_hashes()
    assert len(saved) == size.bit_count()
    for restored in (CompactRange.from_hashes(size, saved), CompactRange.from_reader(size, STORE)):
        original = _compact(size)
        assert restored.size == size
        assert restored.root() == original.root() == ROOTS[size]
        assert restored.to_hashes() == saved
        for d in DATA[size : size + 5]:
            assert restored.append(leaf_hash(d)) == original.append(leaf_hash(d))
        assert restored.root() == ROOTS[size + 5]


def test_compact_range_rejects_bad_state() -> None:
    with pytest.raises(ValueError):
        CompactRange.from_hashes(3, [b"x" * 32])  # 3 has two set bits
    with pytest.raises(ValueError):
        CompactRange.from_hashes(1, [b"short"])
    with pytest.raises(ValueError):
        CompactRange.from_hashes(-1, [])
    with pytest.raises(ValueError):
        CompactRange().append(b"not a hash")


# --- property tests --------------------------------------------------------------------------

unique_leaves = st.lists(st.binary(max_size=16), min_size=1, max_size=40, unique=True)


@settings(max_examples=150, deadline=None)
@given(leaves=unique_leaves, data=st.data())
def test_inclusion_property(leaves: list[bytes], data: st.DataObject) -> None:
    size = len(leaves)
    store = _store(leaves)
    root = store.root()
    assert root == reference_root(leaves)
    index = data.draw(st.integers(0, size - 1), label="index")
    leaf = leaf_hash(leaves[index])
    proof = inclusion_proof(index, size, store)
    verify_inclusion(leaf, index, size, proof, root)

    def fails(lf: bytes, idx: int, sz: int, pf: list[bytes], rt: bytes) -> bool:
        try:
            verify_inclusion(lf, idx, sz, pf, rt)
        except ProofError:
            return True
        return False

    for bit in range(256):
        assert fails(_flip(leaf, bit), index, size, proof, root)
        assert fails(leaf, index, size, proof, _flip(root, bit))
    for i in range(len(proof)):
        bit = data.draw(st.integers(0, 255), label="proof bit")
        assert fails(leaf, index, size, [*proof[:i], _flip(proof[i], bit), *proof[i + 1 :]], root)
    for other in range(size):
        if other != index:
            assert fails(leaf, other, size, proof, root)
    # A claimed size is accepted exactly when it implies the same hashing schedule.
    for other_size in range(index + 1, 2 * size + 2):
        same = (index ^ (other_size - 1)).bit_length() == (index ^ (size - 1)).bit_length()
        assert fails(leaf, index, other_size, proof, root) != same
    for other_size in (size * 2, size // 2):
        if other_size > index and other_size != size:
            assert fails(leaf, index, other_size, proof, root)


@settings(max_examples=150, deadline=None)
@given(
    leaves=st.lists(st.binary(max_size=16), min_size=2, max_size=40, unique=True), data=st.data()
)
def test_consistency_property(leaves: list[bytes], data: st.DataObject) -> None:
    size2 = len(leaves)
    size1 = data.draw(st.integers(1, size2 - 1), label="size1")
    store = _store(leaves)
    root1, root2 = tree_root(size1, store), store.root()
    assert root1 == reference_root(leaves[:size1])
    proof = consistency_proof(size1, size2, store)
    verify_consistency(size1, size2, root1, root2, proof)

    def fails(s1: int, s2: int, r1: bytes, r2: bytes, pf: list[bytes]) -> bool:
        try:
            verify_consistency(s1, s2, r1, r2, pf)
        except ProofError:
            return True
        return False

    for bit in range(256):
        assert fails(size1, size2, _flip(root1, bit), root2, proof)
        assert fails(size1, size2, root1, _flip(root2, bit), proof)
    for i in range(len(proof)):
        bit = data.draw(st.integers(0, 255), label="proof bit")
        assert fails(
            size1, size2, root1, root2, [*proof[:i], _flip(proof[i], bit), *proof[i + 1 :]]
        )
    assert fails(size1, size2, root2, root1, proof)
    for other in range(0, size2 + 2):
        if other != size1:
            assert fails(other, size2, root1, root2, proof)
    for other in range(size1, 2 * size2 + 2):
        same = ((size1 - 1) ^ (other - 1)).bit_length() == ((size1 - 1) ^ (size2 - 1)).bit_length()
        assert fails(size1, other, root1, root2, proof) != same


@given(st.lists(st.binary(max_size=8), max_size=70))
def test_root_of_matches_reference(leaves: list[bytes]) -> None:
    assert root_of([leaf_hash(x) for x in leaves]) == reference_root(leaves)
