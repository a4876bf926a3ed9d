"""The in-process workload.

:func:`run_inprocess` — a fresh workspace, one gateway enrolled per hospital, N pre-signed
``registry.register`` transactions fed through ``Node.submit_many`` in chunks; committed tx/s,
per-chunk submit→receipt latency, blocks cut, and the process's memory after every 10 %.
Transactions are signed before the clock starts; the signing time is reported separately.
"""

from __future__ import annotations

import gc
import itertools
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medledger.bench.common import BenchError, Progress, _quiet
from medledger.bench.machine import CpuWatch, LatencyStats, MemorySamples, _Sampler
from medledger.bench.workload import build_registrations, enrol_gateways
from medledger.errors import MedLedgerError
from medledger.node.node import Node, Receipt
from medledger.workspace import Workspace


@dataclass
class InProcessResult:
    txs: int
    gateways: int
    chunk: int
    window_chunks: int
    admit_processes: int
    max_block_txs: int
    max_wait_ms: float
    sign_seconds: float
    sign_per_s: float
    seconds: float
    tx_per_s: float
    chunk_latency_ms: LatencyStats
    blocks: int
    receipts_ok: int
    not_ok: dict[str, int]
    memory: MemorySamples
    store_mib: float
    store_path: str
    other_cpu_pct: float
    tenths_tx_per_s: list[float]  # committed tx/s within each 10 % of the run, in order

    def to_doc(self) -> dict[str, Any]:
        doc = {k: v for k, v in self.__dict__.items() if k not in ("memory", "chunk_latency_ms")}
        doc["chunk_latency_ms"] = self.chunk_latency_ms.__dict__
        doc["memory"] = self.memory.to_doc()
        return doc


@dataclass
class _Feed:
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    ok: int = 0
    not_ok: dict[str, int] = field(default_factory=dict)


def feed(
    node: Node,
    raws: Sequence[bytes],
    *,
    chunk: int,
    window: int,
    out: _Feed,
    on_done: Callable[[int, float], None],
    timeout: float = 300.0,
) -> None:
    """Submit ``raws`` in chunks from this thread, at most ``window`` chunks awaiting receipts.

    A chunk's latency runs from its ``submit_many`` call to the receipt of its last transaction
    (taken in the commit thread by a done-callback); receipts resolve in log order, so that one
    resolves last, which ``drain`` checks.
    """
    inflight: deque[tuple[list[Future[Receipt]], list[float]]] = deque()
    t0 = time.perf_counter()

    def drain() -> None:
        futs, stamp = inflight.popleft()
        last = -1
        for f in futs:
            try:
                r = f.result(timeout)
            except MedLedgerError as exc:
                out.not_ok[str(exc.code)] = out.not_ok.get(str(exc.code), 0) + 1
                continue
            if r.ok:
                out.ok += 1
            else:
                out.not_ok[r.code] = out.not_ok.get(r.code, 0) + 1
            last = max(last, r.index)
        if futs[-1].exception() is None and futs[-1].result().index != last:
            raise BenchError("receipts of a chunk did not resolve in log order")
        out.latencies.append(stamp[1] - stamp[0])
        on_done(len(futs), out.seconds + time.perf_counter() - t0)

    for i in range(0, len(raws), chunk):
        while len(inflight) >= window:
            drain()
        stamp = [time.perf_counter(), 0.0]
        # the next chunk's ingress checks start while this one's are still running
        futs = node.submit_many(raws[i : i + chunk], wait_admission=False)

        def stamp_last(_: Future[Receipt], stamp: list[float] = stamp) -> None:
            stamp[1] = time.perf_counter()

        futs[-1].add_done_callback(stamp_last)
        inflight.append((futs, stamp))
    while inflight:
        drain()
    out.seconds += time.perf_counter() - t0


def run_inprocess(
    root: Path,
    txs: int,
    *,
    max_block_txs: int = 2000,
    max_wait: float = 0.02,
    chunk: int = 1000,
    window: int = 4,
    sign_round: int = 100_000,
    tag: str = "enc",
    admit_processes: int = 0,
    progress: Progress = _quiet,
) -> InProcessResult:
    """Commit ``txs`` pre-signed registrations through the embedded node (see module doc).

    Transactions are signed in rounds of ``sign_round`` before each round is fed, so a run of
    millions does not hold every signed transaction at once; only feeding is timed.
    ``admit_processes`` is passed to the node (0: its ingress checks run on threads).
    """
    ws = Workspace.init(root, f"bench-{tag}")
    result = _Feed()
    sign_seconds = 0.0
    watch = CpuWatch()
    with ws.node(
        max_block_txs=max_block_txs, max_wait=max_wait, admit_processes=admit_processes
    ) as node:
        gateways = enrol_gateways(node, ws)
        h0 = node.height
        sampler: _Sampler | None = None
        done = 0
        ticks: list[tuple[int, float]] = [(0, 0.0)]  # (txs done, feeding seconds) per sample
        for start in range(0, txs, sign_round):
            n = min(sign_round, txs - start)
            progress(f"signing txs {start:,}..{start + n:,} of {txs:,}")
            t0 = time.perf_counter()
            raws = build_registrations(gateways, start, n, tag)
            sign_seconds += time.perf_counter() - t0
            if sampler is None:
                sampler = _Sampler(txs)
                gc.collect()
                blocks_before = sys.getallocatedblocks()

            def on_done(k: int, clock: float, s: _Sampler = sampler) -> None:
                nonlocal done
                done += k
                if s.tick(done):
                    ticks.append((done, clock))

            progress(f"feeding txs {start:,}..{start + n:,} through submit_many")
            feed(node, raws, chunk=chunk, window=window, out=result, on_done=on_done)
            if start + n < txs:
                del raws
        assert sampler is not None
        gc.collect()
        sampler.mem.idle_blocks = (blocks_before, sys.getallocatedblocks())
        blocks = node.height - h0
        memory = sampler.finish()
    db = root / ws.config["store"]
    return InProcessResult(
        txs=txs,
        gateways=len(gateways),
        chunk=chunk,
        window_chunks=window,
        admit_processes=admit_processes,
        max_block_txs=max_block_txs,
        max_wait_ms=max_wait * 1000,
        sign_seconds=sign_seconds,
        sign_per_s=txs / sign_seconds,
        seconds=result.seconds,
        tx_per_s=txs / result.seconds,
        chunk_latency_ms=LatencyStats.of([x * 1000 for x in result.latencies]),
        blocks=blocks,
        receipts_ok=result.ok,
        not_ok=result.not_ok,
        memory=memory,
        store_mib=round(_db_bytes(db) / 2**20, 1),
        store_path=str(db),
        other_cpu_pct=watch.other_pct(),
        tenths_tx_per_s=[
            (n1 - n0) / (t1 - t0) for (n0, t0), (n1, t1) in itertools.pairwise(ticks) if t1 > t0
        ],
    )


def _db_bytes(db: Path) -> int:
    return sum(p.stat().st_size for p in db.parent.glob(db.name + "*"))
