"""Full verification: replay a stored chain from genesis and check every byte that matters.

``verify_store`` re-derives everything from the genesis document and the stored transactions —
canonical encoding, transaction ids, every signature, contract execution and results, block
headers and hashes, the transaction log's roots, the state roots — and then checks the derived
tables against it: the full state history (each block's stored writes must hash to its header's
``writes_root``), every stored Merkle node (leaves against the transactions, inner nodes against
their children), the compact range, and every signed checkpoint (one per block). It reports the
first inconsistent height and what is wrong.

Parallel replay. Execution is sequential, but a segment of blocks ``[a, b)`` can be replayed on
its own starting from the *stored* state as of ``a-1``, the stored Merkle nodes and the stored
header of ``a-1``. That starting point is itself checked: segment ``[.., a)`` compares every
header it replays with the stored one, the state-history check ties every stored write to those
headers, and the node check ties every stored Merkle node to the transactions. So segments run in
separate processes (one per core) and the whole chain is still verified from genesis.
"""

from __future__ import annotations

import gc
import itertools
import multiprocessing
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field

from medledger.consortium.genesis import Genesis, genesis_writes
from medledger.contracts.base import Registry
from medledger.crypto.keys import verify
from medledger.errors import MedLedgerError
from medledger.ledger import merkle
from medledger.ledger.block import BlockHeader, leaf_data_raw
from medledger.ledger.chain import seal
from medledger.ledger.checkpoint import CheckpointError, verify_checkpoint
from medledger.ledger.checkpoint import key_id as note_key_id
from medledger.ledger.execute import Executed, Executor
from medledger.ledger.state import HistoricalState, MemoryState, writes_root
from medledger.ledger.store.base import BlockCommit, Store, StoredBlock, TxRow
from medledger.ledger.tx import Signature, Transaction, decode

PARALLEL_MIN_TXS = 50_000  # below this, process start-up costs more than it saves
# young-generation threshold during replay: above the containers a block's decoded
# transactions and results keep alive, so the collector does not re-walk them (ADR 0057)
REPLAY_GC_THRESHOLD0 = 50_000


@dataclass(frozen=True)
class Finding:
    height: int | None
    check: str
    detail: str


@dataclass
class VerifyReport:
    chain_id: str = ""
    blocks: int = 0
    txs: int = 0
    checkpoints: int = 0
    seconds: float = 0.0
    workers: int = 1
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings

    @property
    def first_bad_height(self) -> int | None:
        heights = [f.height for f in self.findings if f.height is not None]
        return min(heights) if heights else None


class _Stop(Exception):
    """Replay cannot continue past a broken block."""


@dataclass
class _Segment:
    """What replaying heights [start, stop) found."""

    blocks: int = 0
    txs: int = 0
    findings: list[Finding] = field(default_factory=list)
    # log size -> (height, log root, block hash)
    roots: dict[int, tuple[int, bytes, bytes]] = field(default_factory=dict)
    log_size: int = 0
    log_hashes: list[bytes] = field(default_factory=list)
    writes: int = 0  # state rows this segment's blocks must have stored
    nodes: int = 0  # Merkle nodes this segment's blocks must have stored

    def fail(self, height: int | None, check: str, detail: str) -> None:
        self.findings.append(Finding(height, check, detail))


class _Replayer:
    """Replays one segment of the chain against a store."""

    def __init__(self, store: Store, registry: Registry, genesis: Genesis) -> None:
        self.store, self.genesis = store, genesis
        self.executor = Executor(registry, genesis.chain_id)
        self.out = _Segment()

    def run(self, start: int, stop: int, progress: Callable[[int, int], None] | None) -> _Segment:
        with _rare_young_collections():
            try:
                state, log, prev = self._start(start)
                self._blocks(state, log, prev, max(start, 1), stop, progress)
            except _Stop:
                pass
        return self.out

    def _start(self, start: int) -> tuple[MemoryState, merkle.CompactRange, BlockHeader]:
        if start == 0:
            log = merkle.CompactRange()
            sealed = seal(
                chain=self.genesis.chain_id, height=0, time=self.genesis.time,
                prev_hash=self.genesis.hash, prev_state_root=bytes(32), log=log, tx_ids=[],
                raws=[], executed=Executed([], genesis_writes(self.genesis)), records=False,
            )
            self._compare_block(self.store.block(0), sealed.commit.block, 0)
            self._compare_stored(0, sealed.commit)
            state = MemoryState()
            state.apply(sealed.commit.writes)
            self.out.roots[0] = (0, log.root(), sealed.header.hash)
            return state, log, sealed.header
        blk = self.store.block(start - 1)
        if blk is None:
            self.out.fail(start - 1, "block", f"block {start - 1} missing")
            raise _Stop
        prev = self._decode_header(blk)
        try:
            log = merkle.CompactRange.from_reader(prev.log_size, self.store)
        except KeyError:
            self.out.fail(start - 1, "log_nodes", f"Merkle nodes for log size {prev.log_size} "
                          "missing")
            raise _Stop from None
        return MemoryState(HistoricalState(self.store, start - 1)), log, prev

    def _blocks(
        self,
        state: MemoryState,
        log: merkle.CompactRange,
        prev: BlockHeader,
        start: int,
        stop: int,
        progress: Callable[[int, int], None] | None,
    ) -> None:
        for h in range(start, stop):
            blk = self.store.block(h)
            if blk is None:
                self.out.fail(h, "block", f"block {h} missing below the head")
                raise _Stop
            recs = self.store.tx_rows(blk.first_index, blk.first_index + blk.tx_count)
            prev = self._block(state, log, prev, blk, recs)
            if progress:
                progress(h, stop - 1)
        self.out.log_size, self.out.log_hashes = log.size, log.to_hashes()

    def _block(
        self,
        state: MemoryState,
        log: merkle.CompactRange,
        prev: BlockHeader,
        blk: StoredBlock,
        recs: list[TxRow],
    ) -> BlockHeader:
        h = blk.height
        if blk.first_index != log.size or len(recs) != blk.tx_count:
            self.out.fail(h, "block", f"block {h} claims txs [{blk.first_index}, "
                          f"+{blk.tx_count}); log has {log.size}, store returned {len(recs)}")
            raise _Stop
        # each block's transactions are decoded just before it runs: their objects are then
        # still in the CPU's caches when the executor reads them (ADR 0057)
        txs: list[Transaction] = []
        for i, (index, tx_id, height, raw, _) in enumerate(recs):
            try:
                tx: Transaction | None = decode(raw)
            except MedLedgerError:
                tx = None
            if tx is None or tx.tx_id != tx_id:
                self.out.fail(h, "tx", f"transaction at log index {index} does not decode "
                              "or its id is not SHA-256 of its bytes")
                raise _Stop
            if height != h or index != blk.first_index + i:
                self.out.fail(h, "tx", f"transaction at log index {index} has the wrong "
                              "height or index")
                raise _Stop
            txs.append(tx)

        stored = self._decode_header(blk)
        executed = self.executor.execute_block(state, txs, h, stored.time, _sig_ok)
        if executed.encoded != [r[4] for r in recs]:
            i, r, res = next((i, r, res) for i, (r, res, enc) in enumerate(
                zip(recs, executed.results, executed.encoded, strict=True)) if enc != r[4])
            self.out.fail(h, "result", f"tx {i} of block {h} ({r[1].hex()[:16]}…): "
                          f"stored result differs from replay (replay code {res['code']})")
            raise _Stop
        sealed = seal(chain=prev.chain, height=h, time=stored.time, prev_hash=prev.hash,
                      prev_state_root=prev.state_root, log=log, tx_ids=[t.tx_id for t in txs],
                      raws=(), executed=executed, records=False)
        self._compare_block(blk, sealed.commit.block, h)
        self._compare_stored(h, sealed.commit)
        if stored.time < prev.time:
            self.out.fail(h, "header", f"block time {stored.time} earlier than {prev.time}")
        state.apply(executed.writes)
        self.out.roots[log.size] = (h, log.root(), sealed.header.hash)
        self.out.blocks += 1
        self.out.txs += len(txs)
        return sealed.header

    def _decode_header(self, blk: StoredBlock) -> BlockHeader:
        try:
            return BlockHeader.decode(blk.header)
        except (MedLedgerError, ValueError, KeyError, TypeError) as exc:
            self.out.fail(blk.height, "header", f"stored header of block {blk.height} does not "
                          f"decode: {exc}")
            raise _Stop from None

    def _compare_block(self, got: StoredBlock | None, want: StoredBlock, h: int) -> None:
        if got is None:
            self.out.fail(h, "block", f"block {h} missing")
            raise _Stop
        if got.header != want.header:
            self.out.fail(h, "header", f"stored header of block {h} differs from the replayed one")
            raise _Stop
        if got.hash != want.hash:
            self.out.fail(h, "header", f"stored hash of block {h} is not SHA-256 of its header")
            raise _Stop
        if (got.first_index, got.tx_count) != (want.first_index, want.tx_count):
            self.out.fail(h, "block", f"block {h} claims txs [{got.first_index}, "
                          f"+{got.tx_count}), replay has [{want.first_index}, +{want.tx_count})")
            raise _Stop

    def _compare_stored(self, h: int, commit: BlockCommit) -> None:
        """The block's stored state rows and Merkle nodes equal what replay derived."""
        stored = self.store.block_writes(h, list(commit.writes))
        if stored != commit.writes:
            bad = sorted(k for k in commit.writes if stored.get(k, b"") != commit.writes[k])
            self.out.fail(h, "state", f"stored state writes of block {h} differ from replay "
                          f"({len(bad)} keys, first {bad[0] if bad else '?'})")
            raise _Stop
        # appending leaves [first, size) completes, at each level, the nodes whose indices run
        # from first >> level to (size >> level) - 1: read them as one id range per level and
        # compare with the replayed nodes in id order (level, then index)
        first, size = commit.block.first_index, commit.block.first_index + commit.block.tx_count
        nodes: list[bytes] = []
        level = 0
        try:
            while (size >> level) > (first >> level):
                nodes.extend(self.store.node_range(level, first >> level, size >> level))
                level += 1
        except KeyError:
            nodes = []
        if nodes != [hsh for _, hsh in sorted(commit.nodes)]:
            self.out.fail(h, "log_nodes", f"stored Merkle nodes of block {h} missing or wrong")
            raise _Stop
        self.out.writes += len(commit.writes)
        self.out.nodes += len(commit.nodes)


@contextmanager
def _rare_young_collections() -> Iterator[None]:
    """Raise the collector's young-generation threshold for the replay, then restore it.

    Replay allocates containers at a high rate and frees almost all of them by reference
    counting; at CPython's default (700) the collector re-walked each chunk's decoded
    transactions dozens of times, about 5 µs of CPU per transaction (ADR 0057). Cycles are
    still collected, only less often. A collector switched off (threshold 0) stays off."""
    old = gc.get_threshold()
    raise_it = 0 < old[0] < REPLAY_GC_THRESHOLD0
    if raise_it:
        gc.set_threshold(REPLAY_GC_THRESHOLD0, old[1], old[2])
    try:
        yield
    finally:  # unless another thread has set its own thresholds meanwhile
        if raise_it and gc.get_threshold()[0] == REPLAY_GC_THRESHOLD0:
            gc.set_threshold(*old)


def _sig_ok(tx: Transaction, sig: Signature, pub: bytes) -> bool:
    return verify(pub, tx.signed, sig.sig)


def _replay_segment(
    opener: Callable[[], Store], registry: Registry, start: int, stop: int
) -> _Segment:
    """Process entry point: replay [start, stop) on a freshly opened store."""
    store = opener()
    try:
        genesis = Genesis.load(store.genesis() or b"")
        return _Replayer(store, registry, genesis).run(start, stop, None)
    finally:
        store.close()


class _Derived:
    """Checks of the tables derived from the replay: compact range, state, nodes, checkpoints."""

    def __init__(self, store: Store, genesis: Genesis, seg: _Segment, head: int) -> None:
        self.store, self.genesis, self.seg, self.head = store, genesis, seg, head
        self.out = _Segment()
        self.checkpoints = 0

    def run(self) -> _Segment:
        """Every block's own rows were compared during replay; here only what could lie outside
        them: extra rows (found by counting, then located by a scan), compact range and
        checkpoints."""
        size, hashes = self.store.compact()
        if size != self.seg.log_size or list(hashes) != self.seg.log_hashes:
            self.out.fail(self.head, "compact", "stored compact range differs from replay")
        counts = self.store.row_counts()
        if counts["state"] != self.seg.writes:
            self._state_history()
            if not self.out.findings:
                self.out.fail(self.head, "state", f"{counts['state']} state rows stored, "
                              f"replay wrote {self.seg.writes}")
        if counts["log_nodes"] != self.seg.nodes:
            self._nodes()
            if not any(f.check == "log_nodes" for f in self.out.findings):
                self.out.fail(self.head, "log_nodes", f"{counts['log_nodes']} Merkle nodes "
                              f"stored, the log has {self.seg.nodes}")
        if counts["txs"] != self.seg.log_size:
            self.out.fail(self.head, "tx", f"{counts['txs']} transactions stored, the log has "
                          f"{self.seg.log_size}")
        self._checkpoints()
        return self.out

    def _state_history(self) -> None:
        current: int | None = None
        writes: dict[str, bytes | None] = {}
        for key, h, value in self.store.state_rows():
            if h != current:
                if current is not None:
                    self._writes(current, writes)
                current, writes = h, {}
            writes[key] = value
        if current is not None:
            self._writes(current, writes)

    def _writes(self, h: int, writes: dict[str, bytes | None]) -> None:
        blk = self.store.block(h)
        if blk is None:
            self.out.fail(h, "state", f"state rows for block {h}, which does not exist")
        elif writes_root(writes) != BlockHeader.decode(blk.header).writes_root:
            self.out.fail(h, "state", f"stored state writes of block {h} ({len(writes)} rows) "
                          "do not match its header's writes_root")

    def _nodes(self) -> None:
        size = self.seg.log_size
        level, below = 0, self._leaf_hashes(size)
        while (size >> level) > 0:
            got = self.store.node_rows(level)
            for i in range(size >> level):
                want = next(below) if level == 0 else merkle.node_hash(next(below), next(below))
                row = next(got, None)
                if row is None or row[0] != i or row[1] != want:
                    self.out.fail(self._height_of(((i + 1) << level) - 1), "log_nodes",
                                  f"Merkle node (level {level}, index {i}) missing or wrong")
                    return
            if next(got, None) is not None:
                self.out.fail(self.head, "log_nodes", f"extra Merkle nodes at level {level}")
                return
            below = (h for _, h in self.store.node_rows(level))
            level += 1
        if next(self.store.node_rows(level), None) is not None:
            self.out.fail(self.head, "log_nodes", f"extra Merkle nodes at level {level}")

    def _leaf_hashes(self, size: int) -> Iterator[bytes]:
        step = 8192
        for start in range(0, size, step):
            for r in self.store.txs_range(start, min(start + step, size)):
                yield merkle.leaf_hash(leaf_data_raw(r.tx_id, r.height, r.result))

    def _height_of(self, leaf_index: int) -> int:
        for size in sorted(self.seg.roots):
            if size > leaf_index:
                return self.seg.roots[size][0]
        return self.head

    def _checkpoints(self) -> None:
        keys = self.genesis.org_keys()
        verifiers = {(org, note_key_id(org, pub)): pub for org, pub in keys.items()}
        stored = self.store.checkpoints()
        missing = sorted({h for h, _, _ in self.seg.roots.values()} - {h for _, h, _ in stored})
        if missing:
            self.out.fail(missing[0], "checkpoint", f"no signed checkpoint for block "
                          f"{missing[0]} ({len(missing)} blocks without one)")
        origin = f"medledger/{self.genesis.chain_id}"
        for size, height, note in stored:
            want = self.seg.roots.get(size)
            try:
                cp, _ = verify_checkpoint(note, verifiers, origin=origin)
            except (CheckpointError, MedLedgerError, ValueError) as exc:
                self.out.fail(height, "checkpoint", f"checkpoint at size {size}: {exc}")
                continue
            if want is None or cp.size != size or cp.root != want[1] or height != want[0]:
                self.out.fail(height, "checkpoint", f"checkpoint at size {size} does not match "
                              "the log")
            elif cp.extensions != (f"medledger-block {height} {want[2].hex()}",):
                self.out.fail(height, "checkpoint", f"checkpoint at size {size} names another "
                              "block")
            else:
                self.checkpoints += 1


def _split(store: Store, head: int, parts: int) -> list[tuple[int, int]]:
    """Cut heights [0, head] into ``parts`` segments holding about equal numbers of txs."""
    head_blk = store.block(head)
    total = BlockHeader.decode(head_blk.header).log_size if head_blk is not None else 0
    bounds, h = [0], 1
    for k in range(1, parts):
        target = total * k // parts
        lo, hi = h, head
        while lo < hi:  # first height whose first_index >= target
            mid = (lo + hi) // 2
            blk = store.block(mid)
            if blk is not None and blk.first_index < target:
                lo = mid + 1
            else:
                hi = mid
        if lo > bounds[-1]:
            bounds.append(lo)
    bounds.append(head + 1)
    return list(itertools.pairwise(bounds))


def verify_store(
    store: Store,
    registry: Registry,
    *,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> VerifyReport:
    """Replay and check the whole chain in ``store``; see the module docstring.

    ``workers`` processes replay segments in parallel (default: one per core when the store can
    be reopened and holds at least ``PARALLEL_MIN_TXS`` transactions, else 1, in-process).
    Signatures are verified inline: libsodium releases the GIL, but a verifying thread beside a
    busy interpreter waits for the lock after every call, so threads do not help here.
    """
    began = time.perf_counter()
    report = VerifyReport()
    raw = store.genesis()
    try:
        genesis = Genesis.load(raw or b"")
    except MedLedgerError as exc:
        report.findings.append(Finding(0 if raw else None, "genesis", exc.message))
        return report
    report.chain_id = genesis.chain_id
    head_blk = store.head()
    if head_blk is None:
        report.findings.append(Finding(0, "block", "no block 0"))
        return report
    head = head_blk.height
    opener = store.opener()
    try:
        log_size = BlockHeader.decode(head_blk.header).log_size
    except (MedLedgerError, ValueError, KeyError, TypeError):
        log_size = 0
    if workers is None:
        big = opener is not None and log_size >= PARALLEL_MIN_TXS
        workers = (os.cpu_count() or 1) if big else 1
    segments = _split(store, head, workers) if workers > 1 and opener is not None else [
        (0, head + 1)]
    report.workers = len(segments)
    if len(segments) == 1:
        results = [_Replayer(store, registry, genesis).run(0, head + 1, progress)]
    else:
        assert opener is not None
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(len(segments), mp_context=ctx) as pool:
            futures = [pool.submit(_replay_segment, opener, registry, a, b)
                       for a, b in segments]
            results = [f.result() for f in futures]
            if progress:
                progress(head, head)
    merged = _Segment()
    for seg in results:
        merged.findings.extend(seg.findings)
        merged.roots.update(seg.roots)
        merged.blocks += seg.blocks
        merged.txs += seg.txs
    merged.log_size, merged.log_hashes = results[-1].log_size, results[-1].log_hashes
    merged.writes = sum(seg.writes for seg in results)
    merged.nodes = sum(seg.nodes for seg in results)
    report.blocks, report.txs = merged.blocks, merged.txs
    report.findings.extend(merged.findings)
    if not merged.findings:
        derived = _Derived(store, genesis, merged, head)
        report.findings.extend(derived.run().findings)
        report.checkpoints = derived.checkpoints
    report.seconds = time.perf_counter() - began
    return report
