"""The embedded node: admit → order → execute → commit → sign checkpoint.

* ``submit``/``submit_many`` run the ingress checks (size, canonical bytes, envelope, chain id,
  known signer with a valid key, signatures, replayed nonce, duplicate) on a thread pool —
  libsodium releases the GIL, so signatures verify on every core — and refuse bad input with a
  ``RejectedError`` before it can reach a block.
* One commit thread takes batches from the orderer, executes them deterministically, seals and
  commits each block atomically, signs a checkpoint for it, then resolves the receipts. A
  receipt is only handed out after its block is durably committed.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import threading
import time as _time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, InvalidStateError, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

import orjson

from medledger.consortium.expiry import Expiring, expiring
from medledger.consortium.genesis import Genesis, genesis_writes
from medledger.contracts.base import Registry
from medledger.crypto.keys import SigningKey, verify
from medledger.errors import Code, MedLedgerError, RejectedError
from medledger.ledger import merkle
from medledger.ledger.block import BlockHeader
from medledger.ledger.chain import seal
from medledger.ledger.checkpoint import Checkpoint, sign_checkpoint
from medledger.ledger.execute import Executed, Executor
from medledger.ledger.store.base import BlockCommit, Store, StoreError
from medledger.ledger.tx import Signature, Transaction, decode
from medledger.node.admit import (
    Admitted,
    admit_batch,
    from_outcome,
    verify_batch,
    worker_admit,
    worker_init,
    worker_ready,
    worker_verify,
)
from medledger.node.collector import tune_for_node
from medledger.node.futures import batch_futures
from medledger.ordering.solo import Orderer, SoloOrderer, wall_ms

log = logging.getLogger("medledger.node")
EXPIRY_CHECK_INTERVAL = 600.0  # seconds between expiring-key reports
# a stream batch at least this large is pre-checked in the admission processes, if any (ADR 0062)
PREPARE_IN_PROCESSES = 256


@dataclass(frozen=True, slots=True)
class Receipt:
    tx_id: bytes
    height: int
    index: int
    code: str
    message: str
    value: Any
    events: list[dict[str, Any]]

    @property
    def ok(self) -> bool:
        return self.code == "ok"

    def to_doc(self) -> dict[str, Any]:
        return {"tx_id": self.tx_id.hex(), "height": self.height, "index": self.index,
                "code": self.code, "message": self.message, "value": self.value,
                "events": self.events}


_InFlight = tuple[BlockHeader, BlockCommit, list[dict[str, Any]], "Future[None]"]


@dataclass
class _Admission:
    """One ``submit_many`` call whose ingress checks are running."""

    seq: int
    parts: list[list[bytes]]
    futures: list[Future[Receipt]]
    jobs: list[Future[Any]]
    procs: ProcessPoolExecutor | None  # the worker pool that checks it (results: Outcomes)
    enqueued: threading.Event = field(default_factory=threading.Event)


def _copy_outcome(target: Future[Receipt], source: Future[Receipt]) -> None:
    if target.done():
        return
    exc = source.exception()
    if exc is not None:
        target.set_exception(exc)
    else:
        target.set_result(source.result())


class _Overlay:
    """Committed state plus the writes of the block whose commit is still in flight."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.writes: dict[str, bytes | None] = {}

    def get_state(self, key: str) -> bytes | None:
        writes = self.writes
        return writes[key] if key in writes else self.store.get_state(key)

    def get_states(self, keys: Sequence[str]) -> dict[str, bytes | None]:
        writes = self.writes
        out = self.store.get_states([k for k in keys if k not in writes])
        out.update((k, writes[k]) for k in keys if k in writes)
        return out


def checkpoint_origin(chain_id: str) -> str:
    return f"medledger/{chain_id}"


class Node:
    """One peer's ledger on one store, with solo ordering."""

    def __init__(
        self,
        store: Store,
        registry: Registry,
        *,
        signer: tuple[str, SigningKey],
        max_block_txs: int = 2000,
        max_wait: float = 0.02,
        verify_threads: int = 2,
        admit_processes: int = 0,
        clock: Callable[[], int] = wall_ms,
        orderer: Callable[[Node], Orderer[Admitted]] | None = None,
        tune_gc: bool = True,
    ) -> None:
        """``admit_processes`` > 0 runs ingress checks in that many worker processes (needs a
        store that ``opener()`` can reopen); otherwise on ``verify_threads`` threads.
        ``orderer`` builds the ordering service for this node (default: solo, in-process).
        ``tune_gc``: on ``start``, set up the garbage collector for a node's workload once per
        process (``medledger.node.collector``; it keeps thresholds the application set)."""
        raw = store.genesis()
        if raw is None:
            raise StoreError(Code.NOT_FOUND, "store holds no chain; use Node.create")
        self.store, self.registry = store, registry
        self.genesis = Genesis.load(raw)
        self.chain_id = self.genesis.chain_id
        self.executor = Executor(registry, self.chain_id)
        self.signer = signer
        self._clock = clock  # Unix ms: block times and ingress key-validity checks
        self.on_durable: list[Callable[[BlockHeader], None]] = []  # after each block commit
        # set by a cluster peer: newest final log size, and its status for /v1/health
        self.final_size: Callable[[], int] | None = None
        self.cluster_status: Callable[[], dict[str, Any]] | None = None
        self._verify_threads = verify_threads
        self._pool = ThreadPoolExecutor(verify_threads, thread_name_prefix="admit")
        self._procs: ProcessPoolExecutor | None = None
        self._procs_n = admit_processes if store.opener() is not None else 0
        self._pending: dict[bytes, Future[Receipt]] = {}
        self._admit_lock = threading.Lock()
        self._admit_seq = self._admit_next = 0
        self._admit_ready: dict[int, _Admission] = {}
        self._lock = threading.Lock()
        size, hashes = store.compact()
        self._log = merkle.CompactRange.from_hashes(size, hashes)
        head = store.head()
        assert head is not None
        self._head = BlockHeader.decode(head.header)  # committed and durable
        self._tip = self._head  # newest sealed block (durable or with its commit in flight)
        self._overlay = _Overlay(store)
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="writer")
        self._inflight: _InFlight | None = None
        self._thread: threading.Thread | None = None
        self._next_expiry_check = 0.0
        self._failure: BaseException | None = None
        self._tune_gc = tune_gc
        self.orderer: Orderer[Admitted] = (
            SoloOrderer(max_txs=max_block_txs, max_wait=max_wait, clock=clock)
            if orderer is None else orderer(self)
        )

    @classmethod
    def create(cls, store: Store, genesis: Genesis, registry: Registry, **kw: Any) -> Node:
        """Initialise an empty store with ``genesis`` (block 0), or open it if it matches."""
        existing = store.genesis()
        if existing is None:
            log_ = merkle.CompactRange()
            sealed = seal(
                chain=genesis.chain_id, height=0, time=genesis.time, prev_hash=genesis.hash,
                prev_state_root=bytes(32), log=log_, tx_ids=[], raws=[],
                executed=Executed([], genesis_writes(genesis)),
            )
            store.init(genesis.encoded, sealed.commit)
        elif existing != genesis.encoded:
            raise StoreError(Code.CONFLICT, "store holds a different chain's genesis")
        return cls(store, registry, **kw)

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> Node:
        if self._thread is None:
            if self._tune_gc:
                tune_for_node()
            if self.store.checkpoint() is None:
                self._sign_checkpoint(self._head)
            self.report_expiring()
            if self._procs_n:
                self._procs = self._start_workers()
            self._thread = threading.Thread(target=self._commit_loop, name="commit", daemon=True)
            self._thread.start()
        return self

    def _start_workers(self) -> ProcessPoolExecutor:
        opener = self.store.opener()
        assert opener is not None
        procs = ProcessPoolExecutor(
            self._procs_n, mp_context=multiprocessing.get_context("spawn"),
            initializer=worker_init, initargs=(opener, self.chain_id, os.getpid()))
        for _ in range(self._procs_n):  # spawn them now, not when the first batch waits
            procs.submit(worker_ready)
        return procs

    def _replace_workers(self, broken: ProcessPoolExecutor, why: BaseException) -> None:
        """Replace a pool that a dead worker broke (once, whoever notices first); not while
        the node is stopping."""
        with self._lock:
            if self._procs is not broken or self._thread is None:
                return
            log.warning("admission worker processes failed (%r); starting new ones", why)
            broken.shutdown(wait=False, cancel_futures=True)
            self._procs = self._start_workers()

    def stop(self) -> None:
        """Commit what is queued, then stop."""
        self.orderer.close()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._pool.shutdown(wait=True)
        self._writer.shutdown(wait=True)
        if self._procs is not None:
            self._procs.shutdown(wait=True)
            self._procs = None

    def __enter__(self) -> Node:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def height(self) -> int:
        return self._head.height

    @property
    def head(self) -> BlockHeader:
        return self._head

    # -- ingress -----------------------------------------------------------------------

    def submit(self, raw: bytes) -> Future[Receipt]:
        return self.submit_many([raw])[0]

    def submit_many(
        self, raws: Sequence[bytes], *, wait_admission: bool = True
    ) -> list[Future[Receipt]]:
        """Admit ``raws`` and return one future per transaction.

        Each future yields a Receipt once the transaction's block is durable, or raises
        RejectedError. By default the call returns once the ingress checks are done (a refused
        transaction's future is already failed). With ``wait_admission=False`` it returns at
        once and the checks run in the background, so a caller can hand over the next batch
        meanwhile. Either way batches are ordered as submitted, transactions as given.
        """
        if self._failure is not None:
            raise RejectedError(Code.NODE_UNAVAILABLE, f"commit loop failed: {self._failure}")
        if self._thread is None:
            raise RejectedError(Code.NODE_UNAVAILABLE, "node is not running")
        if self.orderer.free() < len(raws):
            raise RejectedError(Code.NODE_UNAVAILABLE, "ingress queue is full; retry later")
        if not raws:  # no checks to wait for: a batch without jobs would never be enqueued
            return []
        now = self._clock()
        futures: list[Future[Receipt]] = batch_futures(len(raws))
        with self._admit_lock:
            seq = self._admit_seq
            self._admit_seq += 1
        # the batch holds its place in the admission order from here on, so it is always
        # registered below, with jobs that fail if its checks could not be handed over
        parts, jobs, procs = self._admission_jobs(raws, now)
        batch = _Admission(seq, parts, futures, jobs, procs)
        done = partial(self._admission_done, batch)
        for job in jobs:
            job.add_done_callback(done)
        if wait_admission:
            batch.enqueued.wait()
        return futures

    def _admission_jobs(
        self, raws: Sequence[bytes], now: int
    ) -> tuple[list[list[bytes]], list[Future[Any]], ProcessPoolExecutor | None]:
        """Hand the checks of ``raws`` to the admission processes, or to the threads when
        there are none or their pool is broken (then it is replaced). Returns the parts, one
        job each, and the pool they run in (None: the threads)."""
        procs = self._procs
        if procs is not None:
            size = max(64, -(-len(raws) // self._procs_n))
            parts = [list(raws[i : i + size]) for i in range(0, len(raws), size)]
            try:
                return parts, [procs.submit(worker_admit, p, now) for p in parts], procs
            except BrokenProcessPool as exc:  # a dead worker broke it: the threads do these
                self._replace_workers(procs, exc)
        parts = [list(raws[i : i + 256]) for i in range(0, len(raws), 256)]
        try:
            return parts, [self._pool.submit(admit_batch, p, self.chain_id, self.store, now)
                           for p in parts], None
        except RuntimeError:  # the node is stopping
            failed: Future[Any] = Future()
            failed.set_exception(RejectedError(Code.NODE_UNAVAILABLE, "node is stopping"))
            return parts, [failed] * len(parts), None

    def _admission_done(self, batch: _Admission, _job: Future[Any] | None = None) -> None:
        """When every job of a batch is done, enqueue ready batches in submission order."""
        if not all(j.done() for j in batch.jobs):
            return
        with self._admit_lock:
            if batch.seq in self._admit_ready or batch.seq < self._admit_next:
                return  # another job's callback got here first
            self._admit_ready[batch.seq] = batch
            while self._admit_next in self._admit_ready:
                ready = self._admit_ready.pop(self._admit_next)
                self._admit_next += 1
                try:
                    self._enqueue(self._verdicts(ready), ready.futures)
                finally:
                    ready.enqueued.set()

    def _verdicts(self, batch: _Admission) -> list[Admitted | MedLedgerError]:
        out: list[Admitted | MedLedgerError] = []
        for part, job in zip(batch.parts, batch.jobs, strict=True):
            try:
                result = job.result()
            except Exception as exc:  # a broken worker: refuse these, never hang the caller
                if isinstance(exc, MedLedgerError):
                    out.extend(exc for _ in part)
                    continue
                out.extend(RejectedError(Code.NODE_UNAVAILABLE, f"admission failed: {exc}")
                           for _ in part)
                if batch.procs is not None and isinstance(exc, BrokenProcessPool):
                    self._replace_workers(batch.procs, exc)
                continue
            if batch.procs is not None:
                out.extend(from_outcome(r, o) for r, o in zip(part, result, strict=True))
            else:
                out.extend(result)
        return out

    def _enqueue(
        self, admitted: list[Admitted | MedLedgerError], futures: list[Future[Receipt]]
    ) -> None:
        fresh: list[Admitted] = []
        # admission flags a resubmitted tx whose nonce its first copy used; one that committed
        # as invalid (nonce unused) is answered from the store when its block is built
        with self._lock:
            for a, fut in zip(admitted, futures, strict=True):
                if isinstance(a, MedLedgerError):
                    fut.set_exception(a)
                elif a.committed:
                    receipt = self.receipt(a.tx.tx_id)
                    assert receipt is not None
                    fut.set_result(receipt)
                elif a.tx.tx_id in self._pending:
                    self._pending[a.tx.tx_id].add_done_callback(partial(_copy_outcome, fut))
                else:
                    self._pending[a.tx.tx_id] = fut
                    fresh.append(a)
        # outside self._lock: an orderer may answer at once on this thread (a cluster's publish
        # acknowledged as a duplicate settles waiters, which takes self._lock). Batches still
        # reach the orderer in submission order: the caller holds _admit_lock.
        try:
            self.orderer.put(fresh)
        except RuntimeError:  # closed meanwhile
            with self._lock:
                for a in fresh:
                    waiter = self._pending.pop(a.tx.tx_id, None)
                    if waiter is not None and not waiter.done():
                        waiter.set_exception(RejectedError(Code.NODE_UNAVAILABLE,
                                                           "node is stopping"))

    # -- ordering and commit -------------------------------------------------------------

    def _commit_loop(self) -> None:
        """Execute block N+1 while block N's commit (its fsync) completes on the writer thread."""
        try:
            while True:
                if self._inflight is not None:
                    # take only a batch that is (nearly) due; otherwise finish block N now
                    batch = self.orderer.next_batch(timeout=0.0)
                    if batch is None:
                        self._finish_write()
                        continue
                elif (batch := self.orderer.next_batch()) is None:
                    break  # closed and drained, nothing in flight
                self._commit_batch(batch.items, batch.time, height=batch.height)
        except BaseException as exc:  # a store failure: stop, fail every waiter
            # the block in flight, if its write succeeds (say the orderer failed, not the
            # store), is the peer's head: it halts at the same height as every other peer.
            # Finished before the failure is shown, so a node seen failed has its final head
            with contextlib.suppress(BaseException):
                self._finish_write()
            self._failure = exc
            log.exception("commit loop stopped")
            with self._lock:
                for fut in self._pending.values():
                    if not fut.done():
                        fut.set_exception(RejectedError(Code.NODE_UNAVAILABLE, str(exc)))
                self._pending.clear()

    def _commit_batch(
        self, items: list[Admitted], block_time: int, check_store: bool = False,
        height: int | None = None,
    ) -> None:
        """Build, execute and stage one block. With ``height`` (a cluster's orderer fixed it)
        the block is built even if nothing in it survives deduplication, so that every peer's
        heights match the stream's."""
        if height is not None and height != self._tip.height + 1:
            raise MedLedgerError(Code.ORDERING_FAULT,
                                 f"orderer gave block {height} after {self._tip.height}")
        seen: set[bytes] = set()
        unique = []
        for a in items:  # the orderer may carry a retried tx twice: keep the first
            if a.tx.tx_id not in seen:
                seen.add(a.tx.tx_id)
                unique.append(a)
        # A resubmission of a tx that committed as invalid, or one admitted just before its first
        # copy committed, would repeat a stored tx: the store refuses the block (duplicate_tx),
        # and the block is rebuilt without it, answering it from the store instead.
        done = self.store.known_txs(list(seen)) if check_store else set()
        if done:
            answered = 0
            with self._lock:
                for tid in done:
                    fut = self._pending.pop(tid, None)
                    receipt = self.receipt(tid)
                    answered += fut is not None
                    if fut is not None and not fut.done() and receipt is not None:
                        fut.set_result(receipt)
            self.orderer.committed(answered)  # they leave the orderer's books too
            unique = [a for a in unique if a.tx.tx_id not in done]
            if not unique and height is None:
                return
        # admission verified these signatures, each with the public key in ``keys``
        checked = {a.tx.tx_id: a for a in unique if a.keys}

        def sig_ok(tx: Transaction, sig: Signature, pub: bytes) -> bool:
            a = checked.get(tx.tx_id)
            if a is not None:
                for s, k in zip(a.tx.sigs, a.keys, strict=True):
                    if s.by == sig.by:
                        if k == pub:  # the key execution resolved is the one admission used
                            return True
                        break
            return verify(pub, tx.signed, sig.sig)

        tip = self._tip
        height, time = tip.height + 1, max(block_time, tip.time)
        txs = [a.tx for a in unique]
        # reads see committed state plus the writes of the block whose commit is in flight
        executed = self.executor.execute_block(self._overlay, txs, height, time, sig_ok)
        sealed = seal(
            chain=self.chain_id, height=height, time=time, prev_hash=tip.hash,
            prev_state_root=tip.state_root, log=self._log,
            tx_ids=[t.tx_id for t in txs], raws=[t.raw for t in txs], executed=executed,
        )
        note = self._checkpoint_note(sealed.header)
        commit = replace(sealed.commit, checkpoint=(sealed.header.log_size, height, note))
        self._finish_write()  # block N must be durable before block N+1 is written
        try:
            finish = self.store.stage(commit)
        except BaseException as exc:
            size, hashes = self.store.compact()
            self._log = merkle.CompactRange.from_hashes(size, hashes)
            if isinstance(exc, StoreError) and exc.code == Code.DUPLICATE_TX and not check_store:
                self._commit_batch(items, block_time, check_store=True, height=height)
                return
            raise
        self._tip = sealed.header
        self._overlay.writes = commit.writes
        self._inflight = (sealed.header, commit, executed.results, self._writer.submit(finish))

    def _finish_write(self) -> None:
        """Wait until the block in flight is durable, then hand out its receipts."""
        if self._inflight is None:
            return
        header, commit, results, durable = self._inflight
        durable.result()  # a failed commit raises here and stops the loop
        self._inflight = None
        self._overlay.writes = {}
        self._head = header
        if _time.monotonic() >= self._next_expiry_check:
            self.report_expiring()
        own = 0
        with self._lock:
            for rec, result in zip(commit.txs, results, strict=True):
                fut = self._pending.pop(rec.tx_id, None)
                if fut is not None:
                    own += 1
                    try:  # noqa: SIM105 (no context manager per transaction)
                        fut.set_result(Receipt(rec.tx_id, header.height, rec.index,
                                               result["code"], result["message"],
                                               result["value"], result["events"]))
                    except InvalidStateError:  # a waiter cancelled it
                        pass
        self.orderer.committed(own)
        for hook in self.on_durable:
            try:
                hook(header)
            except Exception:  # a hook (e.g. cosigning) must never stop the commit loop
                log.exception("after-commit hook failed at height %d", header.height)

    def prepare_stream(self, raws: Sequence[bytes], *, processes: bool = False
                       ) -> list[Admitted]:
        """Decode transactions a cluster's ordering service delivered and pre-verify their
        signatures against committed state (``admit.verify_batch``) off the commit thread.

        On the admission threads by default: libsodium releases the interpreter lock, so the
        signature math runs beside the commit thread. With ``processes`` (a peer catching up)
        and at least as many admission processes as admission threads, a batch of at least
        ``PREPARE_IN_PROCESSES`` transactions is checked there instead and rebuilt here with
        ``decode_trusted``: decoding then holds this process's lock for a fraction of the
        time, and the commit thread needs it (ADR 0062). At the head of the stream, where
        the machine's cores are busy anyway, that costs more CPU than it saves. Only the
        signature check is reused (keyed by the exact public key); execution re-checks signer,
        key validity, nonce and everything else. Bytes that do not decode are dropped; the
        rest keep their order."""
        if not raws:
            return []
        now = self._clock()
        # fewer workers than admission threads verify less in parallel than the threads do:
        # with 1 worker the replay was slower than on 2 threads (BENCHMARKS.md, "Run T")
        procs = self._procs if (processes and len(raws) >= PREPARE_IN_PROCESSES
                                and self._procs_n >= self._verify_threads) else None
        jobs: list[Future[Any]] = []
        if procs is not None:
            size = -(-len(raws) // self._procs_n)
            parts = [list(raws[i : i + size]) for i in range(0, len(raws), size)]
            try:
                jobs.extend(procs.submit(worker_verify, p, now) for p in parts)
            except Exception as exc:  # a broken or closed pool: the threads do it
                log.warning("stream pre-check cannot use the worker processes: %r", exc)
                for job in jobs:
                    job.cancel()
                if isinstance(exc, BrokenProcessPool):
                    self._replace_workers(procs, exc)
                procs, jobs = None, []
        if procs is None:
            size = max(64, -(-len(raws) // self._verify_threads))
            parts = [list(raws[i : i + size]) for i in range(0, len(raws), size)]
            jobs = [self._pool.submit(verify_batch, p, self.chain_id, self.store, now)
                    for p in parts]
        out: list[Admitted] = []
        for part, job in zip(parts, jobs, strict=True):
            verdicts: list[Admitted | MedLedgerError]
            if procs is None:
                verdicts = job.result()
            else:
                try:
                    verdicts = [from_outcome(r, o)
                                for r, o in zip(part, job.result(), strict=True)]
                except Exception as exc:  # a broken worker: check this part here instead
                    log.warning("stream pre-check in a worker process failed (%r); checking "
                                "%d transactions in this process", exc, len(part))
                    verdicts = verify_batch(part, self.chain_id, self.store, now)
                    if isinstance(exc, BrokenProcessPool):
                        self._replace_workers(procs, exc)
            for raw, verdict in zip(part, verdicts, strict=True):
                if isinstance(verdict, Admitted):
                    out.append(verdict)
                else:  # the executor decides: it may be valid at its block, or not
                    with contextlib.suppress(MedLedgerError):
                        out.append(Admitted(decode(raw), ()))
        return out

    def fail_pending(self, tx_ids: Sequence[bytes], exc: MedLedgerError) -> None:
        """Fail the waiters of ``tx_ids`` (e.g. the ordering service refused them)."""
        with self._lock:
            for tid in tx_ids:
                fut = self._pending.pop(tid, None)
                if fut is not None and not fut.done():
                    fut.set_exception(exc)

    def settle_committed(self, tx_ids: Sequence[bytes]) -> None:
        """Answer the waiters of ``tx_ids`` that are already in the chain. A cluster's ordering
        service drops a resubmission (same message id) whose first copy this node may already
        have executed — after admission looked, before the waiter was registered — so no block
        would ever answer it. Waiters not yet committed stay for their block."""
        settled = 0
        with self._lock:
            waiting = [t for t in tx_ids if t in self._pending]
            for tid in self.store.known_txs(waiting) if waiting else ():
                receipt = self.receipt(tid)
                if receipt is None:  # staged, not yet readable: its block answers it
                    continue
                fut = self._pending.pop(tid)
                settled += 1
                if not fut.done():
                    fut.set_result(receipt)
        if settled:
            self.orderer.committed(settled)

    def _checkpoint_note(self, header: BlockHeader) -> bytes:
        name, key = self.signer
        cp = Checkpoint(
            checkpoint_origin(self.chain_id), header.log_size, header.log_root,
            (f"medledger-block {header.height} {header.hash.hex()}",),
        )
        return sign_checkpoint(cp, name, key.nacl_key())

    def _sign_checkpoint(self, header: BlockHeader) -> None:
        self.store.add_checkpoint(header.log_size, header.height, self._checkpoint_note(header))

    def report_expiring(self) -> list[Expiring]:
        """Log a warning for every key or membership ending within the policy's warning window
        (``key_expiry_warning_ms``, default 30 days); runs at most every 10 minutes."""
        self._next_expiry_check = _time.monotonic() + EXPIRY_CHECK_INTERVAL
        config = orjson.loads(self.store.get_state("consortium/config") or b"{}")
        window = int(config.get("policies", {}).get("key_expiry_warning_ms", 30 * 86_400_000))
        found = expiring(self.store, self._clock(), window)
        for e in found:
            what = f"key {e.kid} of {e.member}" if e.kid else f"membership of {e.member}"
            log.warning("%s %s at %d (Unix ms)", what, "expired" if e.expired else "expires",
                        e.not_after)
        return found

    # -- reads -------------------------------------------------------------------------

    def receipt(self, tx_id: bytes) -> Receipt | None:
        rec = self.store.tx(tx_id)
        if rec is None:
            return None
        r = orjson.loads(rec.result)
        return Receipt(rec.tx_id, rec.height, rec.index, r["code"], r["message"], r["value"],
                       r["events"])

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        size = self._head.log_size if size is None else size
        if not 0 <= index < size <= self._head.log_size:
            raise MedLedgerError(Code.BAD_PROOF_REQUEST,
                                 f"need 0 <= index {index} < size {size} <= {self._head.log_size}")
        return merkle.inclusion_proof(index, size, self.store)

    def consistency_proof(self, old: int, new: int | None = None) -> list[bytes]:
        """RFC 9162 consistency proof from log size ``old`` (> 0) to ``new`` (default: head)."""
        new = self._head.log_size if new is None else new
        if not 0 < old <= new <= self._head.log_size:  # RFC 9162 §2.1.4 defines 0 < old
            raise MedLedgerError(Code.BAD_PROOF_REQUEST,
                                 f"need 0 < old {old} <= new {new} <= {self._head.log_size}")
        return merkle.consistency_proof(old, new, self.store)
