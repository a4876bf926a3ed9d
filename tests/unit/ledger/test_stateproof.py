"""Building state proofs from a store: bounds, anchors, refusals and stored-data checks."""

from __future__ import annotations

import base64

import pytest
from tests.support.statechain import build, light

from medledger.errors import Code, MedLedgerError
from medledger.ledger.stateproof import build_state_proof


def code_of(call: object) -> Code:
    with pytest.raises(MedLedgerError) as info:
        call()  # type: ignore[operator]
    return info.value.code


def test_max_blocks_bounds_the_span_since_the_last_change() -> None:
    s = build([{"k": b"1"}, *({"other": b"%d" % i} for i in range(10))])
    assert len(build_state_proof(s, "k", 11, max_blocks=11)["headers"]) == 11
    with pytest.raises(MedLedgerError, match="needs 11 block headers") as info:
        build_state_proof(s, "k", 11, max_blocks=10)
    assert info.value.code == Code.BAD_PROOF_REQUEST
    # a key never written is proven absent from block 0: one header more
    with pytest.raises(MedLedgerError, match="never written"):
        build_state_proof(s, "nothing", 11, max_blocks=11)
    assert code_of(lambda: build_state_proof(s, "k", 1, max_blocks=0)) == Code.BAD_PROOF_REQUEST
    # a fresh write needs one header whatever the chain's length
    s2 = build([{"other": b"%d" % i} for i in range(10)] + [{"k": b"2"}])
    assert len(build_state_proof(s2, "k", 11, max_blocks=1)["headers"]) == 1


def test_heights_and_checkpoints_that_do_not_exist() -> None:
    s = build([{"k": b"1"}, {"k": b"2"}])
    assert code_of(lambda: build_state_proof(s, "k", 3)) == Code.UNKNOWN_BLOCK
    assert code_of(lambda: build_state_proof(s, "k", -1)) == Code.UNKNOWN_BLOCK
    assert code_of(lambda: build_state_proof(s, "k", 1, size=7)) == Code.NOT_FOUND
    # a checkpoint below the height cannot anchor it
    assert code_of(lambda: build_state_proof(s, "k", 2, size=1)) == Code.BAD_PROOF_REQUEST


def test_block_without_checkpoint_anchors_at_the_newest() -> None:
    s = build([{"k": b"1"}, {"k": b"2"}])
    s._writer.execute("DELETE FROM checkpoints WHERE size = 1")
    doc = build_state_proof(s, "k", 1)
    fact = light().verify_state(doc, key="k", height=1)
    assert (fact.value, fact.anchor) == (b"1", 2)
    s._writer.execute("DELETE FROM checkpoints WHERE size = 2")
    assert code_of(lambda: build_state_proof(s, "k", 1)) == Code.BAD_PROOF_REQUEST


def test_an_empty_block_shares_its_log_size_and_checkpoint_with_the_next() -> None:
    """Checkpoints are stored by log size: block 2 (no transactions) replaces block 1's note,
    so a proof at height 1 runs on to block 2."""
    s = build([{"k": b"1"}, {}, {"k": b"3"}], txs=[1, 0, 1])
    assert s.checkpoint(1) is not None and s.checkpoint(1)[1] == 2  # type: ignore[index]
    fact = light().verify_state(build_state_proof(s, "k", 1), key="k", height=1)
    assert (fact.value, fact.anchor, fact.blocks) == (b"1", 2, 2)


def test_cosignatures_are_attached_to_the_note() -> None:
    s = build([{"k": b"1"}])
    line = "— hosp-b " + base64.b64encode(bytes(76)).decode()
    s.add_cosignatures(1, {"hosp-b": line.encode()})
    doc = build_state_proof(s, "k", 1)
    assert doc["checkpoint"].endswith(line + "\n")
    assert light().verify_state(doc).value == b"1"


def test_tampered_store_rows_are_found_not_proven() -> None:
    s = build([{"a": b"1", "k": b"1"}, {"b": b"2"}, {"c": b"3"}])
    s._writer.execute("UPDATE state SET value = x'39' WHERE key = 'b'")
    with pytest.raises(MedLedgerError, match="block 2 do not give its writes_root") as info:
        build_state_proof(s, "k", 3)
    assert info.value.code == Code.STORE_CORRUPT
    s._writer.execute("DELETE FROM state WHERE key = 'k'")
    with pytest.raises(MedLedgerError, match="writes_root"):
        build_state_proof(s, "k", 1)
    assert build_state_proof(s, "c", 3)["written"] == 3  # block 1 is not part of this proof
    assert code_of(lambda: build_state_proof(s, "nothing", 3)) == Code.STORE_CORRUPT
