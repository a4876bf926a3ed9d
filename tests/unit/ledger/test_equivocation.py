"""Equivocation evidence: conflict kinds, the portable JSON form, independent verification, and
locating where two chains part."""

from __future__ import annotations

import hashlib

import pytest
from tests.support.tlog import ORIGIN, SimLog, seed_key

from medledger.crypto import canonical
from medledger.ledger.checkpoint import Checkpoint, CheckpointError, sign_checkpoint
from medledger.ledger.cosignature import attach, cosign
from medledger.ledger.equivocation import (
    Equivocation,
    EquivocationError,
    block_ref,
    conflict,
    first_divergent_height,
    verify_equivocation,
)
from medledger.ledger.finality import ConsortiumKeys

R1, R2 = hashlib.sha256(b"1").digest(), hashlib.sha256(b"2").digest()
H1, H2 = "ab" * 32, "cd" * 32


def _cp(size: int, root: bytes, *ext: str, origin: str = ORIGIN) -> Checkpoint:
    return Checkpoint(origin, size, root, ext)


def _blk(height: int, h: str) -> str:
    return f"medledger-block {height} {h}"


@pytest.mark.parametrize(
    ("a", "b", "kind"),
    [
        (_cp(5, R1), _cp(5, R2), "same_size"),
        (_cp(5, R1, _blk(3, H1)), _cp(5, R2, _blk(4, H2)), "same_size"),
        (_cp(5, R1, _blk(3, H1)), _cp(5, R1, _blk(3, H2)), "same_height"),  # hash
        (_cp(5, R1, _blk(3, H1)), _cp(6, R2, _blk(3, H1)), "same_height"),  # size
        (_cp(5, R1, _blk(3, H1)), _cp(7, R2, _blk(2, H2)), "height_order"),
        (_cp(7, R2, _blk(2, H2)), _cp(5, R1, _blk(3, H1)), "height_order"),
        (_cp(5, R1, _blk(3, H1)), _cp(7, R2, _blk(4, H2)), None),  # an honest successor
        (_cp(5, R1, _blk(3, H1)), _cp(5, R1, _blk(3, H1), "other ext"), None),
        (_cp(5, R1, _blk(3, H1)), _cp(5, R1, _blk(4, H2)), None),  # same tree: not claimed
        (_cp(5, R1), _cp(5, R2, origin="medledger/other"), None),
        (_cp(5, R1, _blk(3, H1)), _cp(6, R2), None),  # no block line: only sizes compare
    ],
)
def test_conflict_kinds(a: Checkpoint, b: Checkpoint, kind: str | None) -> None:
    assert conflict(a, b) == kind
    assert conflict(b, a) == kind


@pytest.mark.parametrize(
    "ext",
    [
        (_blk(3, H1.upper()),),
        ("medledger-block 03 " + H1,),
        ("medledger-block 3 " + H1[:-2],),
        ("medledger-block 3  " + H1,),
        (_blk(3, H1), _blk(3, H1)),
        (_blk(3, H1), "medledger-block junk"),
    ],
)
def test_block_ref_is_strict(ext: tuple[str, ...]) -> None:
    assert block_ref(_cp(5, R1, *ext)) is None
    assert block_ref(_cp(5, R1, "x", _blk(3, H1))) == (3, bytes.fromhex(H1))


def _fork(*fork_txs: bytes) -> tuple[SimLog, SimLog]:
    """hosp-a's honest log and its fork, both signed by hosp-a: block 4 differs."""
    honest = SimLog()
    honest.grow(3)
    fork = honest.fork()
    honest.seal(b"honest")
    fork.seal(*(fork_txs or (b"fork",)))
    return honest, fork


KEYS = ConsortiumKeys({"hosp-a": bytes(SimLog().key.verify_key)})


def test_evidence_from_real_conflicting_checkpoints() -> None:
    honest, fork = _fork()
    ev = Equivocation.from_notes(fork.note(), honest.note())
    assert ev == Equivocation.from_notes(honest.note(), fork.note())  # order-independent
    assert (ev.origin, ev.kind, ev.height) == (ORIGIN, "same_size", 4)
    data = ev.to_json()
    assert canonical.decode(data)["type"] == "medledger/equivocation/v1"
    assert Equivocation.from_json(data) == ev
    assert ev.digest == hashlib.sha256(data).hexdigest()
    report = verify_equivocation(data, KEYS)
    assert (report.kind, report.a.log_signers, report.b.log_signers) == (
        "same_size", ("hosp-a",), ("hosp-a",))
    assert report.signed_both == ("hosp-a",)
    assert {report.a.checkpoint, report.b.checkpoint} == {honest.checkpoint(), fork.checkpoint()}


def test_evidence_same_height_names_cosigning_witnesses() -> None:
    honest, fork_h4 = _fork(b"fork 1", b"fork 2")  # block 4: size 4 vs size 5
    w1, w2 = seed_key(21), seed_key(22)
    a = attach(honest.note(), [cosign(honest.body(), "hosp-b", w1, 5)])
    b = attach(fork_h4.note(), [cosign(fork_h4.body(), "cdc", w2, 6),
                                cosign(fork_h4.body(), "hosp-b", w1, 6)])
    keys = ConsortiumKeys(KEYS.log, {"hosp-b": bytes(w1.verify_key), "cdc": bytes(w2.verify_key)})
    report = verify_equivocation(Equivocation.from_notes(a, b), keys)
    assert report.kind == "same_height"
    assert (report.a.cosigners, report.b.cosigners) == (("hosp-b",), ("cdc", "hosp-b"))
    assert report.signed_both == ("hosp-a", "hosp-b")


def test_two_peers_each_signing_one_side() -> None:
    """A chain split between two peers: each side names its own signer; nobody signed both."""
    honest, fork = _fork()
    fork.signer, fork.key = "cdc", seed_key(3)
    keys = ConsortiumKeys({"hosp-a": KEYS.log["hosp-a"], "cdc": bytes(fork.key.verify_key)})
    report = verify_equivocation(Equivocation.from_notes(honest.note(), fork.note()), keys)
    assert {report.a.log_signers, report.b.log_signers} == {("hosp-a",), ("cdc",)}
    assert report.signed_both == ()


def test_non_conflicting_pair_rejected() -> None:
    log = SimLog()
    log.grow(3)
    earlier = log.note()
    log.grow(2)
    with pytest.raises(EquivocationError) as e:
        Equivocation.from_notes(earlier, log.note())
    assert e.value.code == "not_conflicting"
    forged = Equivocation(ORIGIN, "same_size", earlier, log.note())
    with pytest.raises(EquivocationError) as e:
        verify_equivocation(forged, KEYS)
    assert e.value.code == "not_conflicting"


def test_unsigned_side_rejected() -> None:
    honest, fork = _fork()
    fork.key = seed_key(9)  # same name, key outside the consortium
    ev = Equivocation.from_notes(honest.note(), fork.note())
    with pytest.raises(EquivocationError) as e:
        verify_equivocation(ev, KEYS)
    assert e.value.code == "unsigned_side"
    # A signature line copied from the honest note does not sign the fork's body either.
    honest_line = honest.note().split(b"\n\n")[1]
    spliced = fork.note().split(b"\n\n")[0] + b"\n\n" + honest_line
    with pytest.raises(EquivocationError):
        verify_equivocation(Equivocation.from_notes(honest.note(), spliced), KEYS)


def _doc(ev: Equivocation) -> dict[str, str]:
    doc = canonical.decode(ev.to_json())
    assert isinstance(doc, dict)
    return doc


@pytest.mark.parametrize(
    "change",
    ["non-canonical", "missing-field", "extra-field", "wrong-type", "wrong-kind", "wrong-origin",
     "swapped", "number-field", "not-an-object"],
)
def test_malformed_evidence_rejected(change: str) -> None:
    ev = Equivocation.from_notes(*(s.note() for s in _fork()))
    doc: object = _doc(ev)
    assert isinstance(doc, dict)
    if change == "missing-field":
        del doc["origin"]
    elif change == "extra-field":
        doc["note"] = "x"
    elif change == "wrong-type":
        doc["type"] = "medledger/equivocation/v2"
    elif change == "wrong-kind":
        doc["kind"] = "same_height"
    elif change == "wrong-origin":
        doc["origin"] = "medledger/other"
    elif change == "swapped":
        doc["a"], doc["b"] = doc["b"], doc["a"]
    elif change == "number-field":
        doc["kind"] = 1
    elif change == "not-an-object":
        doc = [doc]
    data = canonical.encode(doc)
    if change == "non-canonical":
        data = data.replace(b'{"a"', b'{ "a"')
    with pytest.raises(EquivocationError) as e:
        Equivocation.from_json(data)
    assert e.value.code == "bad_evidence"


def test_malformed_note_in_evidence_rejected() -> None:
    ev = Equivocation.from_notes(*(s.note() for s in _fork()))
    doc = _doc(ev)
    doc["b"] = doc["b"].replace("\n\n", "\n", 1)
    with pytest.raises(CheckpointError):
        Equivocation.from_json(canonical.encode(doc))


def test_first_divergent_height() -> None:
    honest, fork = _fork()
    honest.grow(3)
    assert first_divergent_height(honest.bodies(), fork.bodies()) == 4
    as_hashes = {h: honest.hashes[h] for h in range(honest.height + 1)}
    assert first_divergent_height(as_hashes, dict(enumerate(fork.hashes))) == 4
    assert first_divergent_height(honest.bodies(), honest.bodies()) is None
    shorter = {h: b for h, b in honest.bodies().items() if h <= 2}
    assert first_divergent_height(shorter, honest.bodies()) is None  # behind, not diverged
    gap = {h: b for h, b in honest.bodies().items() if h != 1}
    assert first_divergent_height(gap, honest.bodies()) is None
    assert first_divergent_height({}, honest.bodies()) is None
    assert first_divergent_height({0: b"x", 5: b"y"}, {0: b"x", 5: b"z", 2: b"w"}) == 5


def test_real_notes_signed_with_extension_survive_round_trip() -> None:
    """Notes with non-ASCII (the em dash) and extension lines round-trip through JSON exactly."""
    a = sign_checkpoint(_cp(5, R1, _blk(3, H1), "ünïcode ext"), "hosp-a", seed_key(0))
    b = sign_checkpoint(_cp(5, R2, _blk(3, H2)), "hosp-a", seed_key(0))
    ev = Equivocation.from_notes(a, b)
    assert Equivocation.from_json(ev.to_json()) == ev
    assert verify_equivocation(ev.to_json(), KEYS).kind == "same_size"
