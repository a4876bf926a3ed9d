"""The proof workload.

:func:`run_proofs` — a synthetic log written straight into a fresh SQLite store's
``log_nodes`` table, then random inclusion and consistency proofs read from it.
"""

from __future__ import annotations

import random
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medledger.bench.common import BenchError, Progress, _quiet
from medledger.bench.inprocess import _db_bytes
from medledger.bench.machine import CpuWatch, LatencyStats
from medledger.ledger import merkle
from medledger.ledger.store.sqlite import SQLiteStore


@dataclass
class ProofResult:
    leaves: int
    nodes: int
    build_seconds: float
    store_mib: float
    seed: int
    inclusion_us: LatencyStats
    consistency_us: LatencyStats
    inclusion_hashes_mean: float
    consistency_hashes_mean: float
    verified_inclusion: int
    verified_consistency: int
    other_cpu_pct: float

    def to_doc(self) -> dict[str, Any]:
        doc = dict(self.__dict__)
        doc["inclusion_us"] = self.inclusion_us.__dict__
        doc["consistency_us"] = self.consistency_us.__dict__
        return doc


def synthetic_leaf(i: int) -> bytes:
    return b"medledger-bench-leaf:" + i.to_bytes(8, "big")


def build_synthetic_log(
    db: Path, leaves: int, batch: int = 100_000, progress: Progress = _quiet
) -> tuple[bytes, int]:
    """Write the Merkle nodes of ``leaves`` synthetic leaves into a fresh store's ``log_nodes``.

    One transaction per ``batch`` leaves. Returns the root and the number of nodes written.
    """
    db.parent.mkdir(parents=True, exist_ok=True)
    SQLiteStore(db).close()  # creates the schema (WAL, as the node uses it)
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        log = merkle.CompactRange()
        leaf_hash, append = merkle.leaf_hash, log.append
        nodes = 0
        for start in range(0, leaves, batch):
            rows: list[tuple[int, bytes]] = []
            extend = rows.extend
            for i in range(start, min(start + batch, leaves)):
                extend(append(leaf_hash(synthetic_leaf(i))))
            conn.execute("BEGIN")
            conn.executemany("INSERT INTO log_nodes VALUES (?,?)", rows)
            conn.execute("COMMIT")
            nodes += len(rows)
            if (start // batch) % 10 == 9:
                progress(f"synthetic log: {start + batch:,} of {leaves:,} leaves")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    return log.root(), nodes


def run_proofs(
    db: Path,
    leaves: int,
    *,
    proofs: int = 2000,
    verify_every: int = 10,
    seed: int | None = None,
    progress: Progress = _quiet,
) -> ProofResult:
    """Build the synthetic log, then time ``proofs`` random inclusion and consistency proofs.

    Every ``verify_every``-th proof is checked: inclusion against the root the builder computed
    in memory and the recomputed leaf hash, consistency against ``tree_root`` of both sizes.
    """
    if leaves < 2:
        raise BenchError("the proof benchmark needs at least 2 leaves")
    seed = random.SystemRandom().randrange(2**32) if seed is None else seed
    rng = random.Random(seed)
    watch = CpuWatch()
    progress(f"building a synthetic log of {leaves:,} leaves in {db}")
    t0 = time.perf_counter()
    root, nodes = build_synthetic_log(db, leaves, progress=progress)
    build_seconds = time.perf_counter() - t0
    store = SQLiteStore(db)
    try:
        if merkle.tree_root(leaves, store) != root:
            raise BenchError("root read back from the store differs from the built one")
        merkle.inclusion_proof(0, leaves, store)  # opens this thread's connection; untimed
        progress(f"timing {proofs:,} inclusion and {proofs:,} consistency proofs")
        inc_us, inc_len, inc_ok = [], 0, 0
        for k in range(proofs):
            index = rng.randrange(leaves)
            t = time.perf_counter_ns()
            proof = merkle.inclusion_proof(index, leaves, store)
            inc_us.append((time.perf_counter_ns() - t) / 1000)
            inc_len += len(proof)
            if k % verify_every == 0:
                merkle.verify_inclusion(
                    merkle.leaf_hash(synthetic_leaf(index)), index, leaves, proof, root
                )
                inc_ok += 1
        con_us, con_len, con_ok = [], 0, 0
        for k in range(proofs):
            new = rng.randint(2, leaves)
            old = rng.randint(1, new - 1)
            t = time.perf_counter_ns()
            proof = merkle.consistency_proof(old, new, store)
            con_us.append((time.perf_counter_ns() - t) / 1000)
            con_len += len(proof)
            if k % verify_every == 0:
                new_root = root if new == leaves else merkle.tree_root(new, store)
                merkle.verify_consistency(old, new, merkle.tree_root(old, store), new_root, proof)
                con_ok += 1
    finally:
        store.close()
    return ProofResult(
        leaves=leaves,
        nodes=nodes,
        build_seconds=build_seconds,
        store_mib=round(_db_bytes(db) / 2**20, 1),
        seed=seed,
        inclusion_us=LatencyStats.of(inc_us),
        consistency_us=LatencyStats.of(con_us),
        inclusion_hashes_mean=inc_len / proofs,
        consistency_hashes_mean=con_len / proofs,
        verified_inclusion=inc_ok,
        verified_consistency=con_ok,
        other_cpu_pct=watch.other_pct(),
    )
