"""Bad input at the node: each is refused with its reason code and changes no state.

Two places refuse input, and each case below names which:

* ``ingress`` — ``Node.submit`` checks bytes, envelope, chain id, signer, key and signature and
  the nonce before ordering; the returned future raises ``RejectedError`` and nothing reaches the
  log.
* ``block`` — dispatch, authorisation, argument schema and co-signatures need the contract, so the
  transaction is ordered and committed with its reason code in the receipt (it stays in the log,
  as evidence) and writes nothing, not even its nonce.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import Clock, Consortium, Ledger

from medledger.crypto import canonical
from medledger.crypto.keys import SigningKey, b64
from medledger.errors import Code, RejectedError
from medledger.installed import default_registry
from medledger.ledger import tx as txmod
from medledger.ledger.store.sqlite import SQLiteStore
from medledger.node.admit import Admitted
from medledger.node.node import Node, Receipt
from medledger.ordering.solo import Batch, SoloOrderer

ANCHOR = {
    "batch_id": "b1",
    "root": "ab" * 32,
    "count": 1,
    "record_type": "Lab",
    "source_system": "LIS",
    "schema_version": "1",
}
REGISTER = {
    "record_id": "enc-1",
    "record_type": "Encounter",
    "source_system": "HIS",
    "content_hash": "cd" * 32,
    "schema_version": "1",
}


def expect(lg: Ledger, raw: bytes, stage: str, code: Code) -> Receipt | RejectedError:
    """Submit ``raw``; check where and why it is refused and that no state changed."""
    size, state = lg.log_size, lg.all_state()
    if stage == "ingress":
        with pytest.raises(RejectedError) as info:
            lg.submit(raw)
        assert info.value.code == code, info.value
        assert info.value.message
        assert lg.all_state() == state
        # the refused bytes never reach the log: the next transaction takes their place
        probe = lg.filler("hosp-b/gw")
        assert probe.index == size
        return info.value
    assert stage == "block"
    r = lg.submit(raw)
    assert r.code == code, r
    assert r.message and r.value is None and r.events == []
    assert r.index == size and lg.log_size == size + 1
    assert lg.all_state() == state
    return r


def edit(raw: bytes, change: Callable[[dict[str, Any]], Any]) -> bytes:
    """Decode the wire form, change the document, re-encode canonically (signatures kept)."""
    doc = canonical.decode(raw)
    change(doc)
    return canonical.encode(doc)


def test_malformed_json(ledger: Ledger) -> None:
    expect(ledger, b'{"body":{"args":', "ingress", Code.MALFORMED_JSON)
    expect(ledger, b'{"body":"\xff"}', "ingress", Code.MALFORMED_JSON)


def test_non_canonical_encoding(ledger: Ledger) -> None:
    raw = ledger.build("hosp-a/gw", "registry", "anchor_batch", ANCHOR)
    expect(ledger, raw + b"\n", "ingress", Code.NON_CANONICAL)
    expect(ledger, raw.replace(b'"count":1', b'"count":1.0'), "ingress", Code.NON_CANONICAL)
    expect(ledger, raw.replace(b'"count":1', b'"count":1.5'), "ingress", Code.FLOAT_NOT_ALLOWED)
    # the untouched bytes are still fine
    assert ledger.submit(raw).ok


def test_wrong_chain_id(ledger: Ledger) -> None:
    raw = ledger.build("hosp-a/gw", "registry", "anchor_batch", ANCHOR, chain="other-chain")
    expect(ledger, raw, "ingress", Code.WRONG_CHAIN)


def test_bad_signature(ledger: Ledger) -> None:
    raw = ledger.build("hosp-a/gw", "registry", "anchor_batch", ANCHOR)

    def flip(doc: dict[str, Any]) -> None:
        sig = bytearray(txmod.unb64(doc["sigs"][0]["sig"]))
        sig[10] ^= 0x01
        doc["sigs"][0]["sig"] = b64(bytes(sig))

    expect(ledger, edit(raw, flip), "ingress", Code.BAD_SIGNATURE)
    # a body changed after signing
    expect(
        ledger,
        edit(raw, lambda d: d["body"]["args"].update(count=2)),
        "ingress",
        Code.BAD_SIGNATURE,
    )
    # signed by another key under the member's key id
    impostor = ledger.build(
        "hosp-a/gw", "registry", "anchor_batch", ANCHOR, key=SigningKey.generate()
    )
    real_kid = ledger.ring.signing["hosp-a/gw"].kid
    expect(
        ledger,
        edit(impostor, lambda d: d["sigs"][0].update(kid=real_kid)),
        "ingress",
        Code.BAD_SIGNATURE,
    )
    # not even 64 bytes of base64
    expect(
        ledger,
        edit(raw, lambda d: d["sigs"][0].update(sig=b64(bytes(32)))),
        "ingress",
        Code.BAD_SIGNATURE,
    )


def test_missing_signature(ledger: Ledger) -> None:
    raw = ledger.build(
        "hosp-a/steward",
        "registry",
        "transfer",
        {"record_id": "enc-1", "to_org": "hosp-b"},
        cosigners=["hosp-b/steward"],
    )
    expect(ledger, edit(raw, lambda d: d["sigs"].pop(1)), "ingress", Code.MISSING_SIGNATURE)
    expect(ledger, edit(raw, lambda d: d.update(sigs=[])), "ingress", Code.MISSING_SIGNATURE)


def test_unknown_signer(ledger: Ledger) -> None:
    ghost = ledger.build(
        "hosp-a/ghost", "registry", "anchor_batch", ANCHOR, key=SigningKey.generate()
    )
    expect(ledger, ghost, "ingress", Code.UNKNOWN_SIGNER)
    # an enrolled member signing with a key it never registered
    stranger_key = ledger.build(
        "hosp-a/gw", "registry", "anchor_batch", ANCHOR, key=SigningKey.generate()
    )
    expect(ledger, stranger_key, "ingress", Code.UNKNOWN_SIGNER)
    # an unknown co-signer
    cos = ledger.build(
        "hosp-a/steward",
        "registry",
        "transfer",
        {"record_id": "enc-1", "to_org": "hosp-b"},
        cosigners=["hosp-b/ghost"],
        cosigner_keys={"hosp-b/ghost": SigningKey.generate()},
    )
    expect(ledger, cos, "ingress", Code.UNKNOWN_SIGNER)


def test_revoked_key(ledger: Ledger) -> None:
    old, new = ledger.ring.signing["hosp-a/gw"], SigningKey.generate()
    ledger.ok(
        "hosp-a/gw",
        "consortium",
        "rotate_key",
        {"member": "hosp-a/gw", "public_key": b64(new.public), "overlap_ms": 3_600_000},
    )
    ledger.ok("hosp-a/root", "consortium", "revoke_key", {"member": "hosp-a/gw", "kid": old.kid})
    raw = ledger.build("hosp-a/gw", "registry", "anchor_batch", ANCHOR, key=old)
    expect(ledger, raw, "ingress", Code.KEY_REVOKED)


def test_revoked_member(ledger: Ledger) -> None:
    ledger.ok("hosp-a/root", "consortium", "revoke_member", {"member": "hosp-a/gw"})
    raw = ledger.build("hosp-a/gw", "registry", "anchor_batch", ANCHOR)
    expect(ledger, raw, "ingress", Code.MEMBER_REVOKED)


def test_expired_key(ledger: Ledger) -> None:
    key = SigningKey.generate()
    until = ledger.clock() + 60_000
    ledger.ok(
        "hosp-a/root",
        "consortium",
        "enroll",
        {
            "member": "hosp-a/temp",
            "role": "gateway",
            "public_key": b64(key.public),
            "not_after": until,
        },
    )
    ledger.ring.signing["hosp-a/temp"] = key
    assert ledger.submit(ledger.build("hosp-a/temp", "registry", "anchor_batch", ANCHOR)).ok
    ledger.clock.now = until
    raw = ledger.build("hosp-a/temp", "registry", "anchor_batch", {**ANCHOR, "batch_id": "b2"})
    expect(ledger, raw, "ingress", Code.KEY_EXPIRED)


def test_replayed_nonce(ledger: Ledger) -> None:
    assert ledger.submit(ledger.build("hosp-a/gw", "registry", "anchor_batch", ANCHOR, nonce=42)).ok
    again = ledger.build(
        "hosp-a/gw", "registry", "anchor_batch", {**ANCHOR, "batch_id": "b2"}, nonce=42
    )
    expect(ledger, again, "ingress", Code.REPLAYED_NONCE)
    # the nonce is per signer: another member may use 42
    assert ledger.submit(ledger.build("hosp-b/gw", "registry", "anchor_batch", ANCHOR, nonce=42)).ok


def test_same_nonce_twice_in_one_block(ledger: Ledger) -> None:
    a = ledger.build("hosp-a/gw", "registry", "anchor_batch", ANCHOR, nonce=7)
    b = ledger.build("hosp-a/gw", "registry", "anchor_batch", {**ANCHOR, "batch_id": "b2"}, nonce=7)
    ra, rb = (f.result(10) for f in ledger.node.submit_many([a, b]))
    assert ra.ok and rb.code == Code.REPLAYED_NONCE  # both admitted; the block orders them
    assert ledger.state("registry/batch/hosp-a/b2") is None


def test_stale_time(ledger: Ledger) -> None:
    ledger.clock.advance(3 * 3_600_000)
    old = ledger.build(
        "hosp-a/gw", "registry", "anchor_batch", ANCHOR, time=ledger.clock() - 3_600_001
    )
    expect(ledger, old, "block", Code.STALE_TIME)
    future = ledger.build(
        "hosp-a/gw", "registry", "anchor_batch", ANCHOR, time=ledger.clock() + 300_001
    )
    expect(ledger, future, "block", Code.STALE_TIME)


def test_unknown_contract(ledger: Ledger) -> None:
    raw = ledger.build("hosp-a/gw", "billing", "charge", {"amount": 5})
    expect(ledger, raw, "block", Code.UNKNOWN_CONTRACT)


def test_unknown_method(ledger: Ledger) -> None:
    raw = ledger.build("hosp-a/gw", "registry", "erase", {"record_id": "enc-1"})
    expect(ledger, raw, "block", Code.UNKNOWN_METHOD)
    # contract hooks and helpers are not methods
    expect(
        ledger,
        ledger.build("hosp-a/root", "consortium", "begin_block", {}),
        "block",
        Code.UNKNOWN_METHOD,
    )


@pytest.mark.parametrize(
    "args",
    [
        {**REGISTER, "content_hash": "not-a-hash"},
        {**REGISTER, "extra": 1},
        {k: v for k, v in REGISTER.items() if k != "record_type"},
        {**REGISTER, "record_id": ""},
        {**REGISTER, "record_id": "x" * 129},
        {**REGISTER, "schema_version": 1},
        {**REGISTER, "record_type": None},
    ],
    ids=[
        "bad hash",
        "extra field",
        "missing field",
        "empty id",
        "id too long",
        "int for str",
        "null",
    ],
)
def test_arguments_failing_the_schema(ledger: Ledger, args: dict[str, Any]) -> None:
    r = expect(
        ledger, ledger.build("hosp-a/gw", "registry", "register", args), "block", Code.BAD_ARGS
    )
    assert isinstance(r, Receipt)


def test_strict_types_in_arguments(ledger: Ledger) -> None:
    # "1" is not coerced to 1, nor true to 1
    for count in ("1", True):
        raw = ledger.build("hosp-a/gw", "registry", "anchor_batch", {**ANCHOR, "count": count})
        expect(ledger, raw, "block", Code.BAD_ARGS)


def test_oversized_transaction(ledger: Ledger) -> None:
    raw = ledger.build(
        "hosp-a/gw", "registry", "anchor_batch", {**ANCHOR, "pad": "x" * txmod.MAX_TX_BYTES}
    )
    expect(ledger, raw, "ingress", Code.TOO_LARGE)


def test_caller_without_the_role(ledger: Ledger) -> None:
    expect(
        ledger, ledger.build("hosp-a/dr", "registry", "register", REGISTER), "block", Code.FORBIDDEN
    )
    expect(
        ledger,
        ledger.build("hosp-a/gw", "consortium", "revoke_member", {"member": "hosp-a/dr"}),
        "block",
        Code.FORBIDDEN,
    )


def test_missing_cosignature(ledger: Ledger) -> None:
    assert ledger.call("hosp-a/steward", "registry", "register", REGISTER).ok
    raw = ledger.build(
        "hosp-a/steward", "registry", "transfer", {"record_id": "enc-1", "to_org": "hosp-b"}
    )
    expect(ledger, raw, "block", Code.MISSING_COSIGNATURE)


# -- idempotent resubmission -----------------------------------------------------------------------


def test_resubmitting_identical_bytes_returns_the_same_receipt(ledger: Ledger) -> None:
    raw = ledger.build("hosp-a/gw", "registry", "anchor_batch", ANCHOR)
    first = ledger.submit(raw)
    assert first.ok
    size, state = ledger.log_size, ledger.all_state()
    for _ in range(3):
        assert ledger.submit(raw) == first
    assert ledger.log_size == size and ledger.all_state() == state
    assert ledger.node.height == first.height


def test_resubmitting_an_invalid_transaction_is_idempotent_too(ledger: Ledger) -> None:
    raw = ledger.build("hosp-a/dr", "registry", "register", REGISTER)
    first = ledger.submit(raw)
    assert first.code == Code.FORBIDDEN
    size = ledger.log_size
    assert ledger.submit(raw) == first
    assert ledger.log_size == size


def test_identical_bytes_in_flight_are_ordered_once(ledger: Ledger) -> None:
    raw = ledger.build("hosp-a/gw", "registry", "anchor_batch", ANCHOR)
    size = ledger.log_size
    futures = ledger.node.submit_many([raw, raw, raw])
    receipts = [f.result(10) for f in futures]
    assert receipts[0].ok and receipts.count(receipts[0]) == 3
    assert ledger.log_size == size + 1


def test_resubmission_racing_its_own_commit(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression: a copy admitted just before the first copy committed was ordered again, and
    the store's unique tx id then stopped the node (every later submission: node_unavailable).

    A slow ``known_txs`` read at ingress widens the window: the second copy reads "not committed",
    the first copy commits and leaves the pending map, then the second copy is enqueued.
    """
    store, real = ledger.store, ledger.store.known_txs
    delays = iter([0.1, 0.4])
    lock = threading.Lock()

    def slow_known_txs(ids: Sequence[bytes]) -> set[bytes]:
        found = real(ids)
        if threading.current_thread().name != "commit":
            with lock:
                delay = next(delays, 0.0)
            time.sleep(delay)
        return found

    monkeypatch.setattr(store, "known_txs", slow_known_txs)
    raw = ledger.build("hosp-a/gw", "registry", "anchor_batch", ANCHOR)
    size = ledger.log_size
    futures: list[Future[Receipt]] = []

    def submit() -> None:
        futures.append(ledger.node.submit(raw))

    first = threading.Thread(target=submit)
    first.start()
    time.sleep(0.02)
    second = threading.Thread(target=submit)
    second.start()
    first.join()
    second.join()
    receipts = [f.result(10) for f in futures]
    assert receipts[0].ok and receipts[0] == receipts[1]
    monkeypatch.undo()
    assert ledger.filler("hosp-b/gw").ok  # the node still runs
    assert ledger.log_size == size + 2


class _Scripted(SoloOrderer[Admitted]):
    """Hands the node the batches a test queues, as a cluster's orderer hands it blocks."""

    def __init__(self) -> None:
        super().__init__(max_wait=0.001)
        self.script: deque[Batch[Admitted]] = deque()
        self.cond = threading.Condition()

    def queue(self, *batches: Batch[Admitted]) -> None:
        with self.cond:
            self.script.extend(batches)
            self.cond.notify_all()

    def next_batch(self, timeout: float | None = None) -> Batch[Admitted] | None:
        with self.cond:
            self.cond.wait_for(lambda: self.script or self._closed, timeout)
            return self.script.popleft() if self.script else None

    def close(self) -> None:
        super().close()
        with self.cond:
            self.cond.notify_all()


def test_a_copy_of_a_tx_whose_block_is_still_being_written_is_left_out(
    tmp_path: Path, consortium: Consortium, clock: Clock, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A stream can carry one transaction twice (a retry after the engine's duplicate window).
    Block N+1 executes while block N is still being written: a copy in N+1 of a transaction
    of N is left out (the store refuses the block; it is rebuilt without the copy), and so is
    a copy of a committed one; the block holds the rest and the node goes on."""
    scripted = _Scripted()
    store = SQLiteStore(tmp_path / "l.db")
    node = Node.create(store, consortium.genesis, default_registry(),
                       signer=("hosp-a", consortium.ring.signing["hosp-a/root"]),
                       clock=clock, orderer=lambda _: scripted).start()
    try:
        ledger = Ledger(node, consortium.ring, clock)
        a, b, c = (ledger.build("hosp-a/gw", "registry", "anchor_batch",
                                {**ANCHOR, "batch_id": f"twice-{x}"}) for x in "abc")
        h = node.height
        item = {raw: Admitted(txmod.decode(raw), ()) for raw in (a, b, c)}
        scripted.queue(Batch([item[c]], clock()))
        deadline = time.monotonic() + 10
        while node.height < h + 1:
            assert time.monotonic() < deadline
            time.sleep(0.005)
        real_stage, executed = store.stage, node.executor.execute_block
        overlapped: list[bool] = []

        def slow_stage(bc: Any) -> Callable[[], None]:
            finish = real_stage(bc)

            def slow_finish() -> None:
                time.sleep(0.3)  # block N stays in flight while N+1 executes
                finish()
            return slow_finish

        def execute_block(*a: Any, **kw: Any) -> Any:
            overlapped.append(node._inflight is not None)
            return executed(*a, **kw)

        monkeypatch.setattr(store, "stage", slow_stage)
        monkeypatch.setattr(node.executor, "execute_block", execute_block)
        scripted.queue(Batch([item[a]], clock()), Batch([item[a], item[c], item[b]], clock()))
        while node.height < h + 3:
            assert time.monotonic() < deadline
            time.sleep(0.005)
        assert overlapped[:2] == [False, True]  # h+3 executed while h+2 was being written
        got = {raw: store.tx(txmod.tx_id(raw)) for raw in (a, b, c)}
        assert [got[x].height for x in (c, a, b)] == [h + 1, h + 2, h + 3]  # type: ignore[union-attr]
        assert store.head().tx_count == 1  # type: ignore[union-attr]
        assert node._failure is None
    finally:
        node.stop()
        store.close()


def test_an_empty_batch_is_answered_at_once_and_holds_up_nothing(ledger: Ledger) -> None:
    """Regression: an empty batch took a place in the admission order but had no checks to
    finish, so it was never enqueued and every later submission waited behind it forever."""
    got: list[Any] = []

    def run() -> None:
        got.append(ledger.node.submit_many([], wait_admission=False))
        got.append(ledger.node.submit_many([]))
        got.append(ledger.filler("hosp-b/gw"))

    t = threading.Thread(target=run, daemon=True)  # a hang fails the test, not the run
    t.start()
    t.join(15)
    assert not t.is_alive(), "a submission during or after an empty batch never returned"
    assert got[:2] == [[], []] and got[2].ok


def test_background_admission_keeps_verdicts_and_order(ledger: Ledger) -> None:
    raws = [ledger.build("hosp-a/gw", "registry", "anchor_batch",
                         {**ANCHOR, "batch_id": f"bg-{i}"}) for i in range(40)]
    bad = raws[3].replace(b'"bg-3"', b'"bg-3x"')
    first = ledger.node.submit_many([*raws[:20], bad], wait_admission=False)
    second = ledger.node.submit_many(raws[20:], wait_admission=False)
    receipts = [f.result(10) for f in [*first[:20], *second]]
    assert all(r.ok for r in receipts)
    assert [r.index for r in receipts] == sorted(r.index for r in receipts)  # submission order
    with pytest.raises(RejectedError) as info:
        first[20].result(10)
    assert info.value.code == Code.BAD_SIGNATURE
