"""The witness: C2SP tlog-witness add-checkpoint semantics, persistence before signing, rollback
and equivocation refused. Published requests from transparency-dev/witness and FiloSottile/
litetlog replay against it, plus the C2SP request-body example."""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable

import pytest
from tests.support.tlog import ORIGIN, SimLog, seed_key

from medledger.crypto.keys import SigningKey
from medledger.ledger.checkpoint import (
    Checkpoint,
    CheckpointError,
    parse_vkey,
    sign_checkpoint,
)
from medledger.ledger.cosignature import check_cosignatures, parse_cosigner_vkey
from medledger.ledger.equivocation import Equivocation, verify_equivocation
from medledger.ledger.finality import ConsortiumKeys
from medledger.ledger.witness import (
    STATUS,
    Witness,
    WitnessError,
    checkpoint_key,
    format_add_checkpoint,
    parse_add_checkpoint,
)

NOW = 1_764_259_200
W_KEY = SigningKey(bytes(range(32)))


class MemoryPersistence:
    """The Persistence protocol in a dict; counts writes; can be told to fail them."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}
        self.writes = 0
        self.fail = False

    def get_local(self, key: str) -> bytes | None:
        return self.data.get(key)

    def set_local(self, key: str, value: bytes) -> None:
        if self.fail:
            raise OSError("disk full")
        self.writes += 1
        self.data[key] = value


def _witness(
    log: SimLog,
    store: MemoryPersistence | None = None,
    alarm: Callable[[Equivocation], None] | None = None,
) -> tuple[Witness, MemoryPersistence]:
    store = store or MemoryPersistence()
    logs = {log.origin: {log.signer: bytes(log.key.verify_key)}}
    return Witness("hosp-b", W_KEY, store, logs, clock=lambda: NOW, alarm=alarm), store


def _refused(w: Witness, old: int, proof: list[bytes], note: bytes) -> WitnessError:
    with pytest.raises(WitnessError) as e:
        w.add_checkpoint(old, proof, note)
    return e.value


def _cosigned_by_witness(line: str, body: bytes) -> bool:
    keys = {"hosp-b": W_KEY.public}
    return [c.name for c in check_cosignatures(body + b"\n" + line.encode(), keys).valid] == [
        "hosp-b"
    ]


# --- published requests ------------------------------------------------------------------------
# transparency-dev/witness internal/witness/witness_test.go (Apache-2.0): log "monkeys", origin
# "Log Checkpoint v0", checkpoints of sizes 5 and 8 and the consistency proof between them.
M_VKEY = "monkeys+db4d9f7e+AULaJMvTtDLHPUcUrjdDad9vDlh/PTfC2VV60JUtCfWT"
M_INIT = (
    "Log Checkpoint v0\n5\n41smjBUiAU70EtKlT6lIOIYtRTYxYXsDB+XHfcvu/BE=\n\n— monkeys 202ffu1mJ0hrP"
    "IodgN0YQV7uZk9CAEzh+hOQyRjkf9CDY1IOr/oiH6WkzGIy7aEF0rw/9SHiZztjDiTOb53i6CE/zQ8=\n"
).encode()
M_NEXT = (
    "Log Checkpoint v0\n8\nV8K9aklZ4EPB+RMOk1/8VsJUdFZR77GDtZUQq84vSbo=\n\n— monkeys 202ffm1n5/h7F"
    "3x0D6CCysNnqiL2WBu7iubseJggohhX6JBbeLts5NWKY/g0r6yNRVN/k+QJJx1Sii0MzbMUTnmO+wA=\n"
).encode()
M_FROG = (
    "Frog Checkpoint v0\n8\nV8K9aklZ4EPB+RMOk1/8VsJUdFZR77GDtZUQq84vSbo=\n\n— monkeys 202ffgCVdfZm"
    "rroccRdQoEfn2TfmXHez4R++GvVrFvFiaI85O12aTV5GpNOvWsuQW77eNxQ2b7ggYeglzF/QSy/EBws=\n"
).encode()
M_PROOF = [
    bytes.fromhex(h)
    for h in (
        "b9e1d62618f7fee8034e4c5010f727ab24d8e4705cb296c374bf2025a87a10d2",
        "aac66cd7a79ce4012d80762fe8eec3a77f22d1ca4145c3f4cee022e7efcd599d",
        "89d0f753f66a290c483b39cd5e9eafb12021293395fad3d4a2ad053cfbcfdc9e",
        "29e40bb79c966f4c6fe96aff6f30acfce5f3e8d84c02215175d6e018a5dee833",
    )
]


def _monkeys_witness() -> tuple[Witness, MemoryPersistence]:
    name, pk = parse_vkey(M_VKEY)
    store = MemoryPersistence()
    w = Witness("hosp-b", W_KEY, store, {"Log Checkpoint v0": {name: pk}}, clock=lambda: NOW)
    return w, store


def test_transparency_dev_vectors() -> None:
    w, _ = _monkeys_witness()
    first = w.add_checkpoint(0, [], M_INIT)
    assert _cosigned_by_witness(first, M_INIT[: M_INIT.index(b"\n\n") + 1])
    line = w.add_checkpoint(5, M_PROOF, M_NEXT)
    assert _cosigned_by_witness(line, M_NEXT[: M_NEXT.index(b"\n\n") + 1])
    assert w.latest("Log Checkpoint v0") == M_NEXT
    # "vanilla consistency smaller checkpoint": going back to size 5 is refused either way.
    assert _refused(w, 5, M_PROOF, M_INIT).stored_size == 8
    assert _refused(w, 8, [], M_INIT).code == "malformed_request"
    # "vanilla path, but the first line changed": validly signed, but not a trusted origin.
    assert _refused(w, 8, [], M_FROG).code == "unknown_origin"
    assert w.latest("Log Checkpoint v0") == M_NEXT


def test_transparency_dev_garbage_proof() -> None:
    w, _ = _monkeys_witness()
    w.add_checkpoint(0, [], M_INIT)
    garbage = [bytes([0xAA]) * 2, bytes([0xBB]) * 2, bytes([0xCC]) * 2, bytes([0xDD]) * 2]
    assert _refused(w, 5, garbage, M_NEXT).code == "bad_proof"
    flipped = [*M_PROOF[:3], bytes([M_PROOF[3][0] ^ 1]) + M_PROOF[3][1:]]
    assert _refused(w, 5, flipped, M_NEXT).code == "bad_proof"
    assert _refused(w, 5, M_PROOF[:3], M_NEXT).code == "bad_proof"
    assert w.latest("Log Checkpoint v0") == M_INIT


# FiloSottile/litetlog internal/witness/witness_test.go TestRace (BSD-3-Clause): a Sigsum log's
# checkpoints of sizes 1, 3 and 5; after 1 -> 5, the request 1 -> 3 must not roll the log back.
S_ORIGIN = "sigsum.org/v1/tree/4d6d8825a6bb689d459628312889dfbb0bcd41b5211d9e1ce768b0ff0309e562"
S_KEY = bytes.fromhex("ffdc2d4d98e4124d3feaf788c0c2f9abfd796083d1f0495437f302ec79cf100f")
S_NOTES = {
    1: ("KgAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", "UgIom7fPZTqpxWWhyjWduBvTvGVqsokMbqTArsQile"
        "gKoFBJQjUFAmQ0+YeSPM3wfUQMFSzVnnNuWRTYrajXpNUbIQY="),
    3: ("RcCI1Nk56ZcSmIEfIn0SleqtV7uvrlXNccFx595Iwl0=", "UgIom2VbtIcdFbwFAy1n7s6IkAxIY6J/GQOTuZF2OR"
        "V39d75cbAj2aQYwyJre36kezNobZs4SUUdrcawfAB8WVrx6go="),
    5: ("QrtXrQZCCvpIgsSmOsah7HdICzMLLyDfxToMql9WTjY=", "UgIomw/EOJmWi0i1FQsOj+etB7F8IccFam/jgd6wzR"
        "ns4QPVmyEZtdvl1U2KEmLOZ/ASRcWJi0tW90dJWAShei7sDww="),
}
S_PROOF_1_3 = [
    "KgEAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
    "KgIAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
]
S_PROOF_1_5 = [
    "KgEAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
    "+fUDV+k970B4I3uKrqJM4aP1lloPZP8mvr2Z4wRw2LI=",
    "KgQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
]


def _s_note(size: int) -> bytes:
    root, sig = S_NOTES[size]
    return f"{S_ORIGIN}\n{size}\n{root}\n\n— {S_ORIGIN} {sig}\n".encode()


def test_litetlog_race_vectors_no_rollback() -> None:
    store = MemoryPersistence()
    w = Witness("hosp-b", W_KEY, store, {S_ORIGIN: {S_ORIGIN: S_KEY}}, clock=lambda: NOW)
    w.add_checkpoint(0, [], _s_note(1))
    w.add_checkpoint(1, [base64.b64decode(h) for h in S_PROOF_1_5], _s_note(5))
    late = _refused(w, 1, [base64.b64decode(h) for h in S_PROOF_1_3], _s_note(3))
    assert (late.code, late.status, late.stored_size) == ("size_conflict", 409, 5)
    assert w.latest(S_ORIGIN) == _s_note(5)


def test_c2sp_request_body_example_parses() -> None:
    """The add-checkpoint example request body of C2SP tlog-witness."""
    body = (
        "old 20852014\n"
        "PlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaw=\n"
        "jrJZDmY8Y7SyJE0MWLpLozkIVMSMZcD5kvuKxPC3swk=\n"
        "5+pKlUdi2LeF/BcMHBn+Ku6yhPGNCswZZD1X/6QgPd8=\n"
        "/6WVhPs2CwSsb5rYBH5cjHV/wSmA79abXAwhXw3Kj/0=\n"
        "\n"
        "example.com/behind-the-sofa\n"
        "20852163\n"
        "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
        "\n"
        "— example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/"
        "Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n"
        "— example.com/behind-the-sofa opLqBQsREYCgu6xQkYQwJr9fo45a62DN9EdmHXnZdXNqlcVGlCum2Wks+49/"
        "V6267UEjw6QUXTS5Rovnzv++qbSzm9Q=\n"
    ).encode()
    old, proof, note = parse_add_checkpoint(body)
    assert (old, len(proof), note[:27]) == (20852014, 4, b"example.com/behind-the-sofa")
    assert proof[0] == base64.b64decode("PlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaw=")
    assert format_add_checkpoint(old, proof, note) == body


@pytest.mark.parametrize(
    "body",
    [
        b"old 01\n\nnote",
        b"old -1\n\nnote",
        b"old 5\nnote",
        b"new 5\n\nnote",
        b"old 5\n" + b"KgEAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n" * 64 + b"\nnote",
        b"old 5\nKgEAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==\n\nnote",  # 31 bytes
        b"old 5\nKgEAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB=\n\nnote",  # non-canonical
        b"old 5\nnot base64!\n\nnote",
    ],
    ids=["leading-zero", "negative", "no-blank-line", "not-old", "64-hashes", "short-hash",
         "non-canonical-hash", "not-base64"],
)
def test_malformed_request_bodies(body: bytes) -> None:
    with pytest.raises(WitnessError) as e:
        parse_add_checkpoint(body)
    assert (e.value.code, e.value.status) == ("malformed_request", 400)


# --- semantics on a medledger-shaped log -------------------------------------------------------


def test_first_checkpoint_then_consistent_growth() -> None:
    log = SimLog()
    w, store = _witness(log)
    assert _cosigned_by_witness(w.add_checkpoint(0, [], log.note(0)), log.body(0))  # genesis, 0
    log.grow(3)
    assert _cosigned_by_witness(w.add_checkpoint(0, [], log.note()), log.body())  # from 0: empty
    log.grow(4)
    line = w.add_checkpoint(3, log.proof(3, 7), log.note())
    assert _cosigned_by_witness(line, log.body())
    assert w.latest(ORIGIN) == log.note() and store.writes == 3
    assert parse_cosigner_vkey(w.vkey) == ("hosp-b", W_KEY.public)


def test_resubmission_is_cosigned_again_without_a_write() -> None:
    log = SimLog()
    log.grow(2)
    w, store = _witness(log)
    first = w.add_checkpoint(0, [], log.note())
    again = w.add_checkpoint(2, [], log.note())
    assert again == first and store.writes == 1
    assert _refused(w, 2, [bytes(32)], log.note()).code == "bad_proof"  # equal sizes: no proof


def test_persisted_before_signing() -> None:
    log = SimLog()
    log.grow(2)
    store = MemoryPersistence()
    seen: list[bytes | None] = []

    def clock() -> float:  # the cosignature's timestamp is taken when signing
        seen.append(store.get_local(checkpoint_key(ORIGIN)))
        return NOW

    w = Witness("hosp-b", W_KEY, store, {ORIGIN: {log.signer: bytes(log.key.verify_key)}},
                clock=clock)
    w.add_checkpoint(0, [], log.note())
    assert seen == [log.note()]


def test_failed_write_returns_no_cosignature() -> None:
    log = SimLog()
    log.grow(2)
    w, store = _witness(log)
    w.add_checkpoint(0, [], log.note())
    log.grow(1)
    store.fail = True
    err = _refused(w, 2, log.proof(2, 3), log.note())
    assert (err.code, err.status) == ("persist_failed", 503)
    assert isinstance(err.__cause__, OSError)
    store.fail = False
    assert w.latest(ORIGIN) == log.note(2)  # unchanged; the same request succeeds later
    assert _cosigned_by_witness(w.add_checkpoint(2, log.proof(2, 3), log.note()), log.body())


def test_error_codes_and_statuses() -> None:
    log = SimLog()
    log.grow(3)
    w, _ = _witness(log)
    w.add_checkpoint(0, [], log.note())
    log.grow(2)
    note, proof = log.note(), log.proof(3, 5)
    stranger = SimLog(key=seed_key(9))
    stranger.grow(5)
    other_origin = SimLog(origin="medledger/other")
    other_origin.grow(1)
    body, old_note = note[: note.index(b"\n\n") + 1], log.note(3)
    bad_sig = body + b"\n" + old_note[old_note.index(b"\n\n") + 2 :]  # trusted key, other body
    cases = {
        "unknown_origin": (3, proof, other_origin.note()),
        "bad_log_signature": (3, proof, stranger.note()),  # trusted name, other key
        "malformed_request": (3, proof, b"not a note"),
        "size_conflict": (2, proof, note),
        "bad_proof": (3, proof[::-1], note),
    }
    got = {code: _refused(w, *args) for code, args in cases.items()}
    assert {code: e.code for code, e in got.items()} == {c: c for c in cases}
    assert all(e.status == STATUS[e.code] for e in got.values())
    assert got["size_conflict"].stored_size == 3
    assert _refused(w, 3, proof, bad_sig).code == "bad_log_signature"
    assert _refused(w, 6, [], note).code == "malformed_request"  # old > size
    assert _refused(w, 3, [bytes(32)] * 64, note).code == "malformed_request"
    assert _refused(w, 0, [], SimLog().note(0)).code == "size_conflict"  # back to genesis
    assert w.latest(ORIGIN) == log.note(3)
    assert set(STATUS) == {*cases, "equivocation", "persist_failed"}


def test_proof_from_zero_must_be_empty() -> None:
    log = SimLog()
    log.grow(2)
    w, _ = _witness(log)
    assert _refused(w, 0, [bytes(32)], log.note()).code == "bad_proof"
    assert w.latest(ORIGIN) is None


def test_equivocation_same_size_detected_kept_and_alarmed() -> None:
    honest = SimLog()
    honest.grow(3)
    fork = honest.fork()
    honest.seal(b"honest tx")
    fork.seal(b"forked tx")  # same height 4, same size 4, other root
    alarms: list[Equivocation] = []
    w, _ = _witness(honest, alarm=alarms.append)
    w.add_checkpoint(0, [], honest.note())
    err = _refused(w, 4, [], fork.note())
    assert (err.code, err.status) == ("equivocation", 409)
    assert err.evidence is not None and alarms == [err.evidence]
    assert err.evidence.kind == "same_size" and err.evidence.height == 4
    assert w.evidence(ORIGIN) == err.evidence  # kept
    assert w.latest(ORIGIN) == honest.note()  # and nothing changed
    keys = ConsortiumKeys({"hosp-a": bytes(honest.key.verify_key)})
    report = verify_equivocation(err.evidence.to_json(), keys)
    assert report.signed_both == ("hosp-a",)
    # Detected whatever old size the request states.
    assert _refused(w, 0, [], fork.note()).code == "equivocation"


def test_equivocation_same_height_with_growing_size() -> None:
    honest = SimLog()
    honest.grow(2)
    fork = honest.fork()
    honest.seal(b"a")
    fork.seal(b"b", b"c")  # height 3 in both, sizes 3 and 4
    w, _ = _witness(honest)
    w.add_checkpoint(0, [], honest.note())
    err = _refused(w, 3, fork.proof(3, 4), fork.note())
    assert err.code == "equivocation" and err.evidence is not None
    assert err.evidence.kind == "same_height"


def test_default_alarm_logs_critical(caplog: pytest.LogCaptureFixture) -> None:
    honest = SimLog()
    honest.grow(2)
    fork = honest.fork()
    honest.seal(b"a")
    fork.seal(b"b")
    w, _ = _witness(honest)
    w.add_checkpoint(0, [], honest.note())
    with caplog.at_level("CRITICAL"):
        _refused(w, 3, [], fork.note())
    assert "EQUIVOCATION" in caplog.text and "height 3" in caplog.text


def test_concurrent_requests_cannot_roll_back() -> None:
    """tlog-witness's race: A (1 -> 3) stalls between its check and its write while B (1 -> 5)
    runs. With the check and the write under one lock, B waits for A and then is refused."""
    log = SimLog()
    log.grow(1)
    n1 = log.note()
    log.grow(2)
    n3, p13 = log.note(), log.proof(1, 3)
    log.grow(2)
    n5, p15 = log.note(), log.proof(1, 5)
    store = MemoryPersistence()
    w, _ = _witness(log, store)
    w.add_checkpoint(0, [], n1)
    entered, release = threading.Event(), threading.Event()
    plain_set = store.set_local

    def stalling_set(key: str, value: bytes) -> None:
        if value == n3:
            entered.set()
            release.wait(5)
        plain_set(key, value)

    store.set_local = stalling_set  # type: ignore[method-assign]
    results: dict[str, object] = {}

    def run(tag: str, old: int, proof: list[bytes], note: bytes) -> None:
        try:
            results[tag] = w.add_checkpoint(old, proof, note)
        except WitnessError as exc:
            results[tag] = exc

    a = threading.Thread(target=run, args=("a", 1, p13, n3))
    a.start()
    assert entered.wait(5)
    b = threading.Thread(target=run, args=("b", 1, p15, n5))
    b.start()
    time.sleep(0.2)
    assert "b" not in results  # B waits for A's check-and-write
    release.set()
    a.join(5)
    b.join(5)
    assert isinstance(results["a"], str)
    assert isinstance(results["b"], WitnessError) and results["b"].stored_size == 3
    assert w.latest(ORIGIN) == n3


def test_log_keys_of_several_organisations() -> None:
    """The consortium's log is signed by whichever peer built the block."""
    a, b = SimLog(signer="hosp-a", key=seed_key(1)), SimLog(signer="cdc", key=seed_key(2))
    a.grow(2)
    store = MemoryPersistence()
    logs = {ORIGIN: {"hosp-a": bytes(a.key.verify_key), "cdc": bytes(b.key.verify_key)}}
    w = Witness("hosp-b", W_KEY, store, logs, clock=lambda: NOW)
    w.add_checkpoint(0, [], a.note())
    cp = a.checkpoint()
    by_cdc = sign_checkpoint(Checkpoint(cp.origin, cp.size, cp.root, cp.extensions), "cdc", b.key)
    assert _cosigned_by_witness(w.add_checkpoint(2, [], by_cdc), a.body())


def test_configuration_checked_up_front() -> None:
    """A name that cannot sign, or a malformed log key, fails at construction: never after the
    state was written."""
    log = SimLog()
    with pytest.raises(CheckpointError):
        Witness("bad name", W_KEY, MemoryPersistence(), {ORIGIN: {"hosp-a": W_KEY.public}})
    with pytest.raises(ValueError):
        Witness("hosp-b", W_KEY, MemoryPersistence(), {ORIGIN: {"hosp-a": b"short"}})
    assert _witness(log)[0].name == "hosp-b"
