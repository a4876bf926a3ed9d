"""Ingress checks, shared by the node's admission threads and admission processes.

``admit_batch`` checks a batch of wire transactions against committed state: size, canonical
bytes, envelope, chain id, an enrolled and unrevoked signer (and co-signers) holding a key valid
at ``now``, every signature, and unused nonces. It needs only a state reader, so it can run in a
worker process that opened the store itself: that keeps decoding and signature checks off the
node's main interpreter (and its GIL), which executes blocks.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import orjson

from medledger.consortium.model import signing_key
from medledger.crypto.keys import unb64, verify
from medledger.errors import Code, MedLedgerError, RejectedError
from medledger.ledger.state import nonce_key
from medledger.ledger.store.base import Store
from medledger.ledger.tx import Signature, Transaction, decode, decode_trusted


class Reader(Protocol):
    def get_states(self, keys: Sequence[str]) -> dict[str, bytes | None]: ...

    def known_txs(self, tx_ids: Sequence[bytes]) -> set[bytes]: ...


@dataclass(frozen=True, slots=True)
class Admitted:
    tx: Transaction
    keys: tuple[bytes, ...]  # public keys the signatures verified with, in ``tx.sigs`` order
    committed: bool = False  # already in the chain (a resubmission): answer from the store


def admit_batch(
    raws: Sequence[bytes], chain_id: str, reader: Reader, now: int
) -> list[Admitted | MedLedgerError]:
    """Check each transaction; the result list matches ``raws`` one to one."""
    out = _decode_all(raws, chain_id)
    txs = [t for t in out if isinstance(t, Transaction)]
    nonces = [nonce_key(t.signer, t.nonce) for t in txs]
    signers = {f"consortium/member/{s.by}": None for t in txs for s in t.sigs}
    records = reader.get_states([*signers, *nonces])
    used = iter([records[k] is not None for k in nonces])
    replayed = [t.tx_id for t, k in zip(txs, nonces, strict=True) if records[k] is not None]
    committed = reader.known_txs(replayed) if replayed else set()
    keys_of: dict[tuple[str, str], bytes] = {}
    result: list[Admitted | MedLedgerError] = []
    for item in out:
        if not isinstance(item, Transaction):
            assert isinstance(item, MedLedgerError)
            result.append(item)
            continue
        try:
            nonce_used = next(used)
            keys = tuple(_check_sig(item, s, records, keys_of, now) for s in item.sigs)
            if nonce_used and item.tx_id not in committed:  # a committed tx resubmitted stays
                raise RejectedError(Code.REPLAYED_NONCE,  # idempotent
                                    f"{item.signer} already used nonce {item.nonce}")
            result.append(Admitted(item, keys, item.tx_id in committed))
        except MedLedgerError as exc:
            result.append(exc)
    return result


def verify_batch(
    raws: Sequence[bytes], chain_id: str, reader: Reader, now: int
) -> list[Admitted | MedLedgerError]:
    """Decode and verify the signatures of transactions the ordering service delivered.

    The part of ``admit_batch`` a cluster peer reuses when it executes a block: canonical
    decoding, chain id, and every signature against the signer's key valid at ``now``. Nonces
    and earlier copies are not looked up (one read per transaction): the executor decides them
    at the block, as it re-decides everything but the signature arithmetic. The result list
    matches ``raws`` one to one."""
    decoded = _decode_all(raws, chain_id)
    records = reader.get_states(list({f"consortium/member/{s.by}": None
                                      for t in decoded if isinstance(t, Transaction)
                                      for s in t.sigs}))
    keys_of: dict[tuple[str, str], bytes] = {}
    out: list[Admitted | MedLedgerError] = []
    for item in decoded:
        if not isinstance(item, Transaction):
            out.append(item)
            continue
        try:
            out.append(Admitted(item, tuple(_check_sig(item, s, records, keys_of, now)
                                            for s in item.sigs)))
        except MedLedgerError as exc:
            out.append(exc)
    return out


def _decode_all(raws: Sequence[bytes], chain_id: str) -> list[Transaction | MedLedgerError]:
    """Each raw decoded strictly and on ``chain_id``, or the error refusing it, in order."""
    out: list[Transaction | MedLedgerError] = []
    for raw in raws:
        try:
            tx = decode(raw)
            if tx.chain != chain_id:
                raise RejectedError(Code.WRONG_CHAIN, f"got {tx.chain!r}, want {chain_id!r}")
            out.append(tx)
        except MedLedgerError as exc:
            out.append(exc)
    return out


def _check_sig(
    tx: Transaction,
    sig: Signature,
    records: dict[str, bytes | None],
    keys_of: dict[tuple[str, str], bytes],
    now: int,
) -> bytes:
    """Verify ``sig`` of ``tx``; return the public key it verified with. ``keys_of`` caches
    each (member, key id)'s checked public key for the batch: one state snapshot, one ``now``,
    so one verdict on the key."""
    pub = keys_of.get((sig.by, sig.kid))
    if pub is None:
        pub = keys_of[(sig.by, sig.kid)] = _member_key(sig.by, sig.kid, records, now)
    if not verify(pub, tx.signed, sig.sig):
        raise RejectedError(Code.BAD_SIGNATURE, f"signature by {sig.by} does not verify")
    return pub


def _member_key(member_id: str, kid: str, records: dict[str, bytes | None], now: int) -> bytes:
    """Public key ``kid`` of an enrolled, unrevoked member, valid at ``now``; else
    RejectedError."""
    raw = records.get(f"consortium/member/{member_id}")
    if raw is None:
        raise RejectedError(Code.UNKNOWN_SIGNER, f"no enrolled member {member_id}")
    member = orjson.loads(raw)
    if member["status"] == "revoked":
        raise RejectedError(Code.MEMBER_REVOKED, f"member {member_id} was revoked")
    try:
        key = signing_key(member, kid, now)
    except MedLedgerError as exc:
        raise RejectedError(exc.code, exc.message) from None
    return unb64(key["pub"], length=32)


# -- admission processes ---------------------------------------------------------------------

_worker_store: Store | None = None
_worker_chain = ""

# ("ok"|"committed", "", keys, tx id) or (code, message, (), b""); the node reuses the tx id
Outcome = tuple[str, str, tuple[bytes, ...], bytes]


def worker_init(opener: Callable[[], Store], chain_id: str, parent: int | None = None) -> None:
    """Process initialiser: open the store (reads only) once per worker, and exit when the
    node's process is gone (killed with SIGKILL, say) instead of lingering as an orphan."""
    global _worker_store, _worker_chain
    _worker_store, _worker_chain = opener(), chain_id
    # the node's pid comes from the node: if it died before this ran, getppid() is already
    # the reaper's and comparing with it would never fire
    parent = os.getppid() if parent is None else parent

    def watch() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def worker_admit(raws: Sequence[bytes], now: int) -> list[Outcome]:
    """Process entry point: ``admit_batch`` with picklable results."""
    assert _worker_store is not None
    out: list[Outcome] = []
    for r in admit_batch(raws, _worker_chain, _worker_store, now):
        if isinstance(r, Admitted):
            out.append(("committed" if r.committed else "ok", "", r.keys, r.tx.tx_id))
        else:
            out.append((str(r.code), r.message, (), b""))
    return out


def worker_verify(raws: Sequence[bytes], now: int) -> list[Outcome]:
    """Process entry point: ``verify_batch`` with picklable results (a cluster peer's stream
    pre-check, ADR 0062)."""
    assert _worker_store is not None
    return [("ok", "", r.keys, r.tx.tx_id) if isinstance(r, Admitted)
            else (str(r.code), r.message, (), b"")
            for r in verify_batch(raws, _worker_chain, _worker_store, now)]


def worker_ready() -> int:
    """Process entry point that does nothing: submitted once per worker when the node starts,
    so the workers are spawned (interpreter, imports, store) before the first batch needs
    them."""
    return os.getpid()


def from_outcome(raw: bytes, outcome: Outcome) -> Admitted | MedLedgerError:
    """Rebuild a worker's verdict in the node's process (the bytes were already checked)."""
    status, message, keys, tid = outcome
    if status in ("ok", "committed"):
        return Admitted(decode_trusted(raw, tid), keys, status == "committed")
    return RejectedError(Code(status), message)
