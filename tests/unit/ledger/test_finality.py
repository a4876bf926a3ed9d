"""Finality: quorum arithmetic, counting cosigners, and end-to-end verification of a final note."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.support.c2sp_vectors import ARCHE_LOG_VKEY, ARCHE_NOTE, ARCHE_TIME, WITNESSES
from tests.support.tlog import ORIGIN, SimLog, seed_key

from medledger.crypto.keys import SigningKey
from medledger.ledger.checkpoint import CheckpointError, make_verifiers, open_note
from medledger.ledger.cosignature import attach, cosign
from medledger.ledger.finality import (
    ConsortiumKeys,
    FinalCheckpoint,
    FinalityError,
    check_finality,
    quorum,
)
from medledger.ledger.witness import Witness

ORGS = ["hosp-a", "hosp-b", "cdc", "research", "pharmacy", "insurer"]
W = {org: SigningKey(seed_key(100 + i).encode()) for i, org in enumerate(ORGS)}
WITNESS_KEYS = {org: k.public for org, k in W.items()}


class _Mem:
    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    def get_local(self, key: str) -> bytes | None:
        return self.data.get(key)

    def set_local(self, key: str, value: bytes) -> None:
        self.data[key] = value


def _log() -> SimLog:
    log = SimLog()
    log.grow(5)
    return log


def _keys(log: SimLog, witnesses: dict[str, bytes] | None = None) -> ConsortiumKeys:
    return ConsortiumKeys({log.signer: bytes(log.key.verify_key)}, witnesses or WITNESS_KEYS)


def _cosigned(log: SimLog, orgs: list[str]) -> bytes:
    """The log's latest note with cosignatures from real witnesses of ``orgs``."""
    lines = []
    for org in orgs:
        w = Witness(org, W[org], _Mem(), {ORIGIN: {log.signer: bytes(log.key.verify_key)}},
                    clock=lambda: 1_764_259_200)
        lines.append(w.add_checkpoint(0, [], log.note()))
    return attach(log.note(), lines)


def test_quorum_is_ceil_two_thirds() -> None:
    for n in range(1, 301):
        assert quorum(n) == math.ceil(2 * n / 3)
        assert 3 * quorum(n) >= 2 * n > 3 * (quorum(n) - 1)
    assert [quorum(n) for n in (1, 2, 3, 4, 6, 7, 8)] == [1, 2, 2, 3, 4, 5, 6]
    with pytest.raises(ValueError):
        quorum(0)


def test_counting_ignores_duplicates_unknown_and_invalid() -> None:
    log = _log()
    body = log.body()
    good = {org: cosign(body, org, W[org].nacl_key(), 10) for org in ORGS[:3]}
    stranger = cosign(body, "stranger", seed_key(7), 10)
    impostor = cosign(body, "cdc", seed_key(8), 10)  # known name, other key: other key ID
    forged = cosign(log.body(3), "research", W["research"].nacl_key(), 10)  # other body
    lines = [*good.values(), good["hosp-a"], stranger, impostor, forged, log.note().decode()
             .split("\n\n")[1]]
    fin = check_finality(body, lines, WITNESS_KEYS)
    assert fin.organisations == ("cdc", "hosp-a", "hosp-b")
    assert (fin.needed, fin.final) == (4, False)
    more = check_finality(body, [*lines, cosign(body, "insurer", W["insurer"].nacl_key(), 11)],
                          WITNESS_KEYS)
    assert more.organisations == ("cdc", "hosp-a", "hosp-b", "insurer") and more.final
    assert check_finality(body, lines, WITNESS_KEYS, needed=3).final
    assert not check_finality(body, [], WITNESS_KEYS).final


def test_counting_accepts_stored_lines_as_bytes() -> None:
    """Stores keep lines as bytes without the newline (Store.add_cosignatures)."""
    log = _log()
    raw = [cosign(log.body(), o, W[o].nacl_key(), 1).rstrip("\n").encode() for o in ORGS[:4]]
    assert check_finality(log.body(), raw, WITNESS_KEYS).final


def test_final_checkpoint_end_to_end() -> None:
    log = _log()
    note = _cosigned(log, ORGS[:4])
    final = FinalCheckpoint.verify(note, _keys(log), origin=ORIGIN)
    assert final.checkpoint == log.checkpoint() and final.log_signers == ("hosp-a",)
    assert [c.name for c in final.cosigners] == sorted(ORGS[:4]) and final.needed == 4
    assert open_note(note, _keys(log).log_verifiers())[1] == ["hosp-a"]


def _refusal(note: bytes, keys: ConsortiumKeys, origin: str | None = None) -> FinalityError:
    with pytest.raises(FinalityError) as e:
        FinalCheckpoint.verify(note, keys, origin=origin)
    return e.value


def test_final_checkpoint_refusals() -> None:
    log = _log()
    three = _cosigned(log, ORGS[:3])
    err = _refusal(three, _keys(log))
    assert err.code == "not_final" and "want at least 4" in err.message
    assert FinalCheckpoint.verify(three, _keys(log), needed=3).needed == 3
    four = _cosigned(log, ORGS[:4])
    other_log = ConsortiumKeys({"hosp-a": bytes(seed_key(5).verify_key)}, WITNESS_KEYS)
    assert _refusal(four, other_log).code == "no_log_signature"
    assert _refusal(four, _keys(log), origin="medledger/other").code == "wrong_origin"


def test_real_witness_network_checkpoint_is_final() -> None:
    """Interop: the published arche2025h1 checkpoint is final for 4 witnesses (quorum 3)."""
    keys = ConsortiumKeys({n: pk for (n, _), pk in make_verifiers([ARCHE_LOG_VKEY]).items()},
                          WITNESSES)
    final = FinalCheckpoint.verify(ARCHE_NOTE, keys)
    assert final.needed == 3 and len(final.cosigners) == 4
    assert {c.timestamp for c in final.cosigners} == {ARCHE_TIME}


_LOG = _log()
_NOTE = _cosigned(_LOG, ORGS[:3])
_ALL3 = ConsortiumKeys({"hosp-a": bytes(_LOG.key.verify_key)},
                       {o: WITNESS_KEYS[o] for o in ORGS[:3]})


@settings(max_examples=300, deadline=None)
@given(st.integers(0, len(_NOTE) - 1), st.integers(1, 255))
def test_any_one_byte_change_fails_verification(index: int, delta: int) -> None:
    """With every cosignature needed, changing any byte of the note (body, log signature, any
    cosignature, separators) makes it fail: a signature breaks, a line no longer matches a key,
    or the note no longer parses."""
    assert FinalCheckpoint.verify(_NOTE, _ALL3, needed=3).needed == 3
    mutated = bytearray(_NOTE)
    mutated[index] = (mutated[index] + delta) % 256
    with pytest.raises(CheckpointError):
        FinalCheckpoint.verify(bytes(mutated), _ALL3, needed=3)


def test_every_byte_flipped_fails_verification() -> None:
    """The exhaustive companion of the property test: each byte XOR 1, and each byte set to 'A'."""
    for i in range(len(_NOTE)):
        for new in {_NOTE[i] ^ 0x01, ord("A")} - {_NOTE[i]}:
            with pytest.raises(CheckpointError):
                FinalCheckpoint.verify(_NOTE[:i] + bytes([new]) + _NOTE[i + 1 :], _ALL3, needed=3)
