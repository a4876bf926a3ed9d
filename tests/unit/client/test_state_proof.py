"""State proofs: every honest proof verifies offline and says what the store says; each way of
lying about a key's history — a tampered value, a dropped block, forged non-membership, a
header not tied to the checkpoint, another height or key — is refused."""

from __future__ import annotations

import base64
import copy
from typing import Any

import nacl.signing
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.support import statechain
from tests.support.statechain import build, light, note_for

from medledger.client.light import LightClient, LightClientError
from medledger.errors import Code
from medledger.ledger.block import BlockHeader
from medledger.ledger.stateproof import build_state_proof
from medledger.ledger.store.sqlite import SQLiteStore

V1, V2 = b'{"v":1}', b'{"v":2}'
BLOCKS: list[dict[str, bytes | None]] = [
    {"p/a": V1, "p/c": b"1"},  # 1: written
    {"p/b": b"2", "p/d": b"2"},  # 2: p/a below the first leaf
    {},  # 3: nothing written
    {"p/0": b"4"},  # 4: p/a above the last leaf
    {"a": b"5", "z": b"5", "q": b"5"},  # 5: p/a between adjacent leaves a < p/a < q
    {"a": b"6", "p/a": V2, "z": b"6"},  # 6: changed (middle leaf)
    {"p/a": None, "\u00e9": b"7"},  # 7: deleted
    {"q": b"8"},  # 8
]
KEYS = ["p/a", "p/b", "a", "z", "q", "\u00e9", "consortium/config", "never", "", "p/a/x"]


@pytest.fixture(scope="module")
def store() -> SQLiteStore:
    return build(BLOCKS)


def proof(store: SQLiteStore, key: str = "p/a", height: int = 5, **kw: Any) -> dict[str, Any]:
    return build_state_proof(store, key, height, **kw)


def refused(doc: dict[str, Any], match: str, client: LightClient | None = None,
            **kw: Any) -> None:
    with pytest.raises(LightClientError, match=match):
        (client or light()).verify_state(doc, **kw)


@pytest.mark.parametrize("key", KEYS)
def test_every_key_at_every_height_is_proven_as_stored(store: SQLiteStore, key: str) -> None:
    for h in range(len(BLOCKS) + 1):
        doc = proof(store, key, h)
        fact = light().verify_state(doc, key=key, height=h)
        found = store.state_at(key, h)
        assert (fact.written, fact.value) == (found or (None, None)), (key, h)
        assert fact.anchor == h and fact.checkpoint.size == h  # one tx per block
        assert fact.blocks == h - (0 if found is None else found[0]) + 1


def test_shapes_of_the_proof(store: SQLiteStore) -> None:
    doc = proof(store, "p/a", 6)
    assert doc["written"] == 6 and base64.b64decode(doc["value"]) == V2
    assert doc["write"]["size"] == 3 and doc["write"]["index"] == 1 and doc["absent"] == []
    doc = proof(store, "p/a", 5)
    assert doc["written"] == 1 and [h["height"] for h in doc["headers"]] == [1, 2, 3, 4, 5]
    first, empty, last, middle = doc["absent"]
    assert first["left"] is None and first["right"]["key"] == "p/b"
    assert empty == {"height": 3, "size": 0}
    assert last["right"] is None and last["left"]["key"] == "p/0"
    assert (middle["left"]["key"], middle["right"]["key"]) == ("a", "q")
    gone = light().verify_state(proof(store, "p/a", 8))
    assert gone.value is None and gone.written == 7
    never = light().verify_state(proof(store, "never", 8))
    assert never.value is None and never.written is None and never.blocks == 9


def test_default_height_is_the_newest_checkpoint_and_older_anchors_work(
        store: SQLiteStore) -> None:
    doc = build_state_proof(store, "q")
    assert doc["height"] == 8 and light().verify_state(doc).value == b"8"
    # proven against a later checkpoint: the headers run on to the block it names
    doc = proof(store, "p/a", 5, size=8)
    fact = light().verify_state(doc, key="p/a", height=5)
    assert (fact.anchor, fact.value, fact.blocks) == (8, V1, 8)


# -- each lie is refused ----------------------------------------------------------------------


def test_tampered_value(store: SQLiteStore) -> None:
    doc = proof(store, "p/a", 5)
    refused({**doc, "value": base64.b64encode(V2).decode()}, "write of 'p/a'")
    refused({**doc, "value": None}, "write of 'p/a'")
    refused({**doc, "value": "not base64!"}, "base64")
    doc = proof(store, "never", 4)
    refused({**doc, "value": base64.b64encode(V1).decode()}, "never written")


def test_stale_value_hiding_a_later_change(store: SQLiteStore) -> None:
    """Claim p/a still had V1 at height 6 (hiding the change in block 6): the honest proof at 5
    plus a forged non-membership for block 6 with non-adjacent neighbours a and z."""
    doc = proof(store, "p/a", 5)
    a6, z6 = proof(store, "a", 6)["write"], proof(store, "z", 6)["write"]  # leaves 0 and 2
    forged = copy.deepcopy(doc)
    forged["height"] = 6
    later = proof(store, "p/a", 5, size=6)
    forged["headers"], forged["checkpoint"] = later["headers"], later["checkpoint"]
    forged["absent"].append({
        "height": 6, "size": 3,
        "left": {"key": "a", "value": base64.b64encode(b"6").decode(), **a6},
        "right": {"key": "z", "value": base64.b64encode(b"6").decode(), **z6}})
    for side in ("left", "right"):
        forged["absent"][-1][side].pop("size")
    refused(forged, "not adjacent")
    # an honest-looking pair cannot be found: the leaf after "a" is "p/a" itself
    forged["absent"][-1]["right"] = {**forged["absent"][-1]["right"], "index": 1}
    refused(forged, "block 6 right neighbour")
    # and without the block's proof at all, the non-membership list is short
    forged["absent"].pop()
    refused(forged, "want exactly 2..6")


def test_dropped_block(store: SQLiteStore) -> None:
    doc = proof(store, "p/a", 5)
    dropped = {**doc, "headers": doc["headers"][:2] + doc["headers"][3:]}
    refused(dropped, "a block is missing")
    relabelled = copy.deepcopy(dropped)
    for i, hd in enumerate(relabelled["headers"]):
        hd["height"] = 1 + i
    refused(relabelled, "prev is not the hash")
    refused({**doc, "absent": doc["absent"][:1] + doc["absent"][2:]}, "want exactly 2..5")
    refused({**doc, "headers": doc["headers"][1:]}, "written 1 is not the first header")
    never = proof(store, "never", 3)
    refused({**never, "headers": never["headers"][1:], "absent": never["absent"][1:]},
            "never written must be proven absent from block 0")


def test_forged_non_membership_below_first_or_above_last(store: SQLiteStore) -> None:
    doc = proof(store, "p/a", 5)
    bad = copy.deepcopy(doc)
    first = bad["absent"][0]  # block 2: right = leaf 0 "p/b"
    first["left"], first["right"] = first["right"], None  # "p/b" as the last leaf below p/a
    refused(bad, "does not sort below")
    bad = copy.deepcopy(doc)
    last = bad["absent"][2]  # block 4 holds one leaf; claim it is empty
    bad["absent"][2] = {"height": last["height"], "size": 0}
    refused(bad, "block 4 wrote something")
    bad = copy.deepcopy(doc)
    bad["absent"][1] = {"height": 3, "size": 1, "left": None, "right": None}
    refused(bad, "needs a neighbour")
    # the key itself offered as its own neighbour
    six = proof(store, "p/a", 6)
    fake = copy.deepcopy(doc)
    later = proof(store, "p/a", 5, size=6)
    fake["height"], fake["headers"], fake["checkpoint"] = 6, later["headers"], later["checkpoint"]
    own = {"key": "p/a", "value": six["value"], "index": six["write"]["index"],
           "hashes": six["write"]["hashes"]}
    fake["absent"].append({"height": 6, "size": 3, "left": None, "right": own})
    refused(fake, "does not sort above")


def test_header_not_tied_to_the_checkpoint(store: SQLiteStore) -> None:
    doc = proof(store, "p/a", 5)
    older = store.checkpoint(4)
    assert older is not None
    refused({**doc, "checkpoint": older[2].decode()}, "checkpoint names block 4")
    # a forged anchor header with the genuine log_size/log_root (what a consistency proof alone
    # would accept) but another writes root: its hash is not the one the checkpoint signs
    forged = copy.deepcopy(doc)
    forged["headers"][-1]["writes_root"] = "00" * 32
    refused(forged, "checkpoint names block 5")
    # a trusted signer's note naming no block, or a block whose log is not the note's
    header = BlockHeader.decode(store.block(5).header)  # type: ignore[union-attr]
    from medledger.ledger.checkpoint import Checkpoint, sign_checkpoint

    bare = sign_checkpoint(Checkpoint("medledger/" + statechain.CHAIN, header.log_size,
                                      header.log_root), statechain.ORG, statechain.KEY)
    refused({**doc, "checkpoint": bare.decode()}, "exactly one block")
    other = BlockHeader.decode(store.block(4).header)  # type: ignore[union-attr]
    crossed = note_for(other, block=(5, header.hash))
    refused({**doc, "checkpoint": crossed.decode()}, "is not the checkpoint's")
    # a note by a key the client does not trust
    stranger = note_for(header, key=nacl.signing.SigningKey.generate())
    refused({**doc, "checkpoint": stranger.decode()}, "checkpoint")
    refused(doc, "want 'another-chain'", LightClient("another-chain", light().trusted))
    refused({**doc, "chain": "another-chain"}, "proof is for chain 'another-chain'")


def test_wrong_height_or_key(store: SQLiteStore) -> None:
    doc = proof(store, "p/a", 5)
    refused(doc, "height 5, want 6", height=6)
    refused(doc, "key 'p/a', want 'p/b'", key="p/b")
    refused({**doc, "height": 4}, "want exactly 2..4")  # relabelled: proofs cover 2..5
    refused({**doc, "height": 9}, "outside the headers")
    refused({**doc, "key": "p/b"}, "write of 'p/b'")


def test_malformed_documents(store: SQLiteStore) -> None:
    doc = proof(store, "p/a", 5)
    for bad in ({**doc, "type": "x"}, {**doc, "headers": []}, {**doc, "height": True},
                {**doc, "headers": [{"height": 1}]}, {**doc, "absent": None},
                {**doc, "write": None}, {**doc, "written": "1"}):
        with pytest.raises(LightClientError) as info:
            light().verify_state(bad)
        assert info.value.code == Code.BAD_PROOF_REQUEST, bad


# -- property: random histories ------------------------------------------------------------------

KEY_POOL = ["k", "k/1", "k/2", "m", "\u00e9", "\U0001f600", "K"]
block_writes = st.dictionaries(st.sampled_from(KEY_POOL),
                               st.one_of(st.none(), st.binary(min_size=0, max_size=4)),
                               max_size=len(KEY_POOL))


@settings(max_examples=60, deadline=None)
@given(blocks=st.lists(block_writes, min_size=1, max_size=7), data=st.data())
def test_random_histories_prove_exactly_the_stored_value(
        blocks: list[dict[str, bytes | None]], data: st.DataObject) -> None:
    s = build(blocks)
    try:
        client = light()
        for _ in range(6):
            key = data.draw(st.sampled_from([*KEY_POOL, "absent"]))
            h = data.draw(st.integers(0, len(blocks)))
            doc = build_state_proof(s, key, h)
            fact = client.verify_state(doc, key=key, height=h)
            assert (fact.written, fact.value) == (s.state_at(key, h) or (None, None))
            lie = data.draw(st.binary(max_size=4))
            if lie != fact.value:
                with pytest.raises(LightClientError):
                    client.verify_state({**doc, "value": base64.b64encode(lie).decode()})
    finally:
        s.close()
