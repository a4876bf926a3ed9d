"""Full verification: replay a stored chain from genesis and check every byte that matters.

``verify_store`` re-derives everything from the genesis document and the stored transactions —
canonical encoding, transaction ids, every signature, contract execution and results, block
headers and hashes, the transaction log's roots, the state roots — and then checks the derived
tables against it: the full state history (each block's stored writes must hash to its header's
``writes_root``), every stored Merkle node (leaves against the transactions, inner nodes against
their children), the compact range, and every signed checkpoint. It reports the first
inconsistent height and what is wrong. Signatures are checked on a thread pool (libsodium releases
the GIL) while the main thread replays.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import orjson

from medledger.consortium.genesis import Genesis, genesis_writes
from medledger.contracts.base import Registry
from medledger.crypto.keys import unb64, verify
from medledger.errors import MedLedgerError
from medledger.ledger import merkle
from medledger.ledger.block import BlockHeader, leaf_data_raw
from medledger.ledger.chain import seal
from medledger.ledger.checkpoint import CheckpointError, verify_checkpoint
from medledger.ledger.checkpoint import key_id as note_key_id
from medledger.ledger.execute import Executed, Executor
from medledger.ledger.state import MemoryState, writes_root
from medledger.ledger.store.base import Store, StoredBlock, TxRecord
from medledger.ledger.tx import Signature, Transaction, decode

CHUNK_TXS = 4096


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


class Verifier:
    def __init__(
        self,
        store: Store,
        registry: Registry,
        threads: int = 2,
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        self.store, self.registry, self.threads = store, registry, threads
        self.progress = progress
        self.report = VerifyReport()
        self.state = MemoryState()
        self.log = merkle.CompactRange()
        self.roots: dict[int, tuple[int, bytes, bytes]] = {}  # size -> (height, root, hash)
        self.pubs: dict[tuple[str, str], bytes] = {}

    def fail(self, height: int | None, check: str, detail: str) -> None:
        self.report.findings.append(Finding(height, check, detail))

    def run(self) -> VerifyReport:
        start = time.perf_counter()
        raw = self.store.genesis()
        if raw is None:
            self.fail(None, "genesis", "store holds no genesis")
            return self.report
        try:
            genesis = Genesis.load(raw)
        except MedLedgerError as exc:
            self.fail(0, "genesis", exc.message)
            return self.report
        self.report.chain_id = genesis.chain_id
        executor = Executor(self.registry, genesis.chain_id)
        try:
            self._replay(genesis, executor)
        except _Stop:
            pass
        else:
            self._check_compact()
            self._check_state_history()
            self._check_nodes()
            self._check_checkpoints(genesis)
        self.report.seconds = time.perf_counter() - start
        return self.report

    # -- replay ------------------------------------------------------------------------

    def _replay(self, genesis: Genesis, executor: Executor) -> None:
        head = self.store.head()
        if head is None:
            self.fail(0, "block", "no block 0")
            raise _Stop
        total = head.height
        blk0 = self.store.block(0)
        expected0 = seal(
            chain=genesis.chain_id, height=0, time=genesis.time, prev_hash=genesis.hash,
            prev_state_root=bytes(32), log=self.log, tx_ids=[], raws=[],
            executed=Executed([], genesis_writes(genesis)),
        )
        self._compare_block(blk0, expected0.commit.block, 0)
        self.state.apply(expected0.commit.writes)
        self._remember_pubs(expected0.commit.writes)
        prev = expected0.header
        self.roots[0] = (0, self.log.root(), prev.hash)
        with ThreadPoolExecutor(self.threads) as pool:
            pending: Future[set[tuple[bytes, str, bytes]]] | None = None
            chunks = self._chunks(total)
            current = next(chunks, None)
            while current is not None:
                txs_by_block, decoded = current
                pending = pool.submit(self._check_sigs, decoded) if pending is None else pending
                nxt = next(chunks, None)
                good = pending.result()
                pending = None if nxt is None else pool.submit(self._check_sigs, nxt[1])
                for blk, recs in txs_by_block:
                    prev = self._replay_block(executor, blk, recs, decoded, good, prev)
                    if self.progress:
                        self.progress(blk.height, total)
                current = nxt

    def _chunks(
        self, total: int
    ) -> Iterator[tuple[list[tuple[StoredBlock, list[TxRecord]]], dict[bytes, Transaction]]]:
        h = 1
        while h <= total:
            blocks: list[tuple[StoredBlock, list[TxRecord]]] = []
            decoded: dict[bytes, Transaction] = {}
            count = 0
            while h <= total and count < CHUNK_TXS:
                blk = self.store.block(h)
                if blk is None:
                    self.fail(h, "block", f"block {h} missing below head {total}")
                    raise _Stop
                recs = self.store.txs_range(blk.first_index, blk.first_index + blk.tx_count)
                for r in recs:
                    try:
                        decoded[r.tx_id] = decode(r.raw)
                    except MedLedgerError:
                        pass  # reported when the block is replayed
                blocks.append((blk, recs))
                count += max(1, len(recs))
                h += 1
            yield blocks, decoded

    def _check_sigs(self, decoded: dict[bytes, Transaction]) -> set[tuple[bytes, str, bytes]]:
        good = set()
        for tx in decoded.values():
            for s in tx.sigs:
                pub = self.pubs.get((s.by, s.kid))
                if pub is not None and verify(pub, tx.signed, s.sig):
                    good.add((tx.tx_id, s.by, pub))
        return good

    def _replay_block(
        self,
        executor: Executor,
        blk: StoredBlock,
        recs: list[TxRecord],
        decoded: dict[bytes, Transaction],
        good: set[tuple[bytes, str, bytes]],
        prev: Any,
    ) -> Any:
        h = blk.height
        if blk.first_index != self.log.size or len(recs) != blk.tx_count:
            self.fail(h, "block", f"block {h} claims txs [{blk.first_index}, +{blk.tx_count}); "
                      f"log has {self.log.size}, store returned {len(recs)}")
            raise _Stop
        txs = []
        for i, r in enumerate(recs):
            tx = decoded.get(r.tx_id)
            if tx is None or tx.raw != r.raw or r.height != h or r.index != blk.first_index + i:
                why = "does not decode or its id is not SHA-256 of its bytes" if tx is None or \
                    tx.raw != r.raw else "has the wrong height or index"
                self.fail(h, "tx", f"transaction at log index {r.index} {why}")
                raise _Stop
            txs.append(tx)

        def sig_ok(tx: Transaction, sig: Signature, pub: bytes) -> bool:
            return (tx.tx_id, sig.by, pub) in good or verify(pub, tx.signed, sig.sig)

        try:
            stored = BlockHeader.decode(blk.header)
        except (MedLedgerError, ValueError, KeyError, TypeError) as exc:
            self.fail(h, "header", f"stored header of block {h} does not decode: {exc}")
            raise _Stop from None
        executed = executor.execute_block(self.state, txs, h, stored.time, sig_ok)
        for i, (r, res, enc) in enumerate(
            zip(recs, executed.results, executed.encoded, strict=True)
        ):
            if enc != r.result:
                self.fail(h, "result", f"tx {i} of block {h} ({r.tx_id.hex()[:16]}…): stored "
                          f"result differs from replay (replay code {res['code']})")
                raise _Stop
        sealed = seal(chain=prev.chain, height=h, time=stored.time, prev_hash=prev.hash,
                      prev_state_root=prev.state_root, log=self.log,
                      tx_ids=[t.tx_id for t in txs], raws=[t.raw for t in txs], executed=executed)
        self._compare_block(blk, sealed.commit.block, h)
        if stored.time < prev.time:
            self.fail(h, "header", f"block time {stored.time} earlier than {prev.time}")
        self.state.apply(executed.writes)
        self._remember_pubs(executed.writes)
        self.roots[self.log.size] = (h, self.log.root(), sealed.header.hash)
        self.report.blocks += 1
        self.report.txs += len(txs)
        return sealed.header

    def _compare_block(self, got: StoredBlock | None, want: StoredBlock, h: int) -> None:
        if got is None:
            self.fail(h, "block", f"block {h} missing")
            raise _Stop
        if got.header != want.header:
            self.fail(h, "header", f"stored header of block {h} differs from the replayed one")
            raise _Stop
        if got.hash != want.hash:
            self.fail(h, "header", f"stored hash of block {h} is not SHA-256 of its header")
            raise _Stop

    def _remember_pubs(self, writes: dict[str, bytes | None]) -> None:
        for k, v in writes.items():
            if k.startswith("consortium/member/") and v is not None:
                m = orjson.loads(v)
                for key in m["keys"]:
                    self.pubs[(m["id"], key["kid"])] = unb64(key["pub"], length=32)

    # -- derived tables ----------------------------------------------------------------

    def _check_compact(self) -> None:
        size, hashes = self.store.compact()
        if size != self.log.size or list(hashes) != self.log.to_hashes():
            self.fail(self.report.blocks, "compact", "stored compact range differs from replay")

    def _check_state_history(self) -> None:
        current: int | None = None
        writes: dict[str, bytes | None] = {}
        last_key = ""
        for key, h, value in self.store.state_rows():
            if h != current:
                if current is not None:
                    self._check_writes(current, writes)
                current, writes, last_key = h, {}, ""
            if key <= last_key and writes:
                self.fail(h, "state", f"state rows of block {h} out of order")
            writes[key], last_key = value, key
        if current is not None:
            self._check_writes(current, writes)

    def _check_writes(self, h: int, writes: dict[str, bytes | None]) -> None:
        blk = self.store.block(h)
        if blk is None:
            self.fail(h, "state", f"state rows for block {h}, which does not exist")
            return
        if writes_root(writes) != BlockHeader.decode(blk.header).writes_root:
            self.fail(h, "state", f"stored state writes of block {h} ({len(writes)} rows) "
                      "do not match its header's writes_root")

    def _check_nodes(self) -> None:
        size = self.log.size
        leaves = self._leaf_hashes()
        level, below = 0, leaves
        while (size >> level) > 0:
            count = size >> level
            got = self.store.node_rows(level)
            for i in range(count):
                want = next(below) if level == 0 else merkle.node_hash(next(below), next(below))
                row = next(got, None)
                if row is None or row[0] != i or row[1] != want:
                    self.fail(self._height_of(((i + 1) << level) - 1), "log_nodes",
                              f"Merkle node (level {level}, index {i}) missing or wrong")
                    return
            if next(got, None) is not None:
                self.fail(self.report.blocks, "log_nodes", f"extra Merkle nodes at level {level}")
                return
            below = (h for _, h in self.store.node_rows(level))
            level += 1

    def _leaf_hashes(self) -> Iterator[bytes]:
        step = 8192
        for start in range(0, self.log.size, step):
            for r in self.store.txs_range(start, min(start + step, self.log.size)):
                yield merkle.leaf_hash(leaf_data_raw(r.tx_id, r.height, r.result))

    def _height_of(self, leaf_index: int) -> int:
        for size in sorted(self.roots):
            if size > leaf_index:
                return self.roots[size][0]
        return self.report.blocks

    def _check_checkpoints(self, genesis: Genesis) -> None:
        verifiers = {(org, note_key_id(org, pub)): pub for org, pub in genesis.org_keys().items()}
        stored = self.store.checkpoints()
        have = {height for _, height, _ in stored}
        missing = sorted({h for h, _, _ in self.roots.values()} - have)
        if missing:
            self.fail(missing[0], "checkpoint", f"no signed checkpoint for block {missing[0]} "
                      f"({len(missing)} blocks without one)")
        for size, height, note in stored:
            want = self.roots.get(size)
            try:
                cp, _ = verify_checkpoint(note, verifiers, origin=f"medledger/{genesis.chain_id}")
            except (CheckpointError, MedLedgerError, ValueError) as exc:
                self.fail(height, "checkpoint", f"checkpoint at size {size}: {exc}")
                continue
            if want is None or cp.size != size or cp.root != want[1] or height != want[0]:
                self.fail(height, "checkpoint", f"checkpoint at size {size} does not match the log")
                continue
            if cp.extensions and cp.extensions != (f"medledger-block {height} {want[2].hex()}",):
                self.fail(height, "checkpoint", f"checkpoint at size {size} names another block")
                continue
            self.report.checkpoints += 1


def verify_store(
    store: Store,
    registry: Registry,
    *,
    threads: int = 2,
    progress: Callable[[int, int], None] | None = None,
) -> VerifyReport:
    """Replay and check the whole chain in ``store``; see the module docstring."""
    return Verifier(store, registry, threads, progress).run()
