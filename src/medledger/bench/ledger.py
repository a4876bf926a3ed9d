"""Ledger benchmarks for issue 2: throughput, verify speed, proof latency, node memory.

This module is the entry point: :func:`run` runs every workload, :func:`checks` compares the
figures with the issue's targets, :class:`LedgerBench` holds the results. It re-exports the
workloads and result types, which live in their own modules (each returns a result dataclass;
every figure in it is measured in the run):

* :func:`~medledger.bench.baseline.signature_baseline` — the machine's Ed25519 ceiling.
* :func:`~medledger.bench.inprocess.run_inprocess` — pre-signed txs fed through
  ``Node.submit_many``.
* :func:`~medledger.bench.http_run.run_http` — the same workload posted to
  ``medledger node start``.
* :func:`~medledger.bench.verify_run.run_verify` — ``verify_store`` over the in-process chain.
* :func:`~medledger.bench.proofs.run_proofs` — proofs read from a synthetic log.

Signing is the clients' cost, so transactions are signed before the clock starts; the signing
time is reported separately (:mod:`medledger.bench.workload`). The machine may be shared, so
each workload also reports how much CPU other processes used meanwhile
(:class:`~medledger.bench.machine.CpuWatch`).

``verify_store`` starts worker processes with the ``spawn`` method: a script calling
:func:`run_verify` or :func:`run` needs the ``if __name__ == "__main__":`` guard.
"""

from __future__ import annotations

import time
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medledger.bench.baseline import SigBaseline, signature_baseline
from medledger.bench.common import BenchError, Progress, _quiet
from medledger.bench.http_run import HttpResult, free_port, run_http
from medledger.bench.inprocess import InProcessResult, feed, run_inprocess
from medledger.bench.machine import (
    CpuWatch,
    LatencyStats,
    Machine,
    MemorySamples,
    background_cpu,
    hwm_kib,
    percentile,
    rss_kib,
    slope_per_100k,
    tree_rss_kib,
)
from medledger.bench.proofs import ProofResult, build_synthetic_log, run_proofs, synthetic_leaf
from medledger.bench.verify_run import VerifyResult, run_verify
from medledger.bench.workload import HOSPITALS, build_registrations, enrol_gateways
from medledger.client.client import Client
from medledger.ledger.tx import decode
from medledger.workspace import Workspace

__all__ = [
    "HOSPITALS",
    "MEMORY_MIN_TXS",
    "TARGET_HTTP_TPS",
    "TARGET_INPROCESS_TPS",
    "TARGET_MEMORY_KIB_PER_100K",
    "TARGET_PROOF_LEAVES",
    "TARGET_PROOF_US",
    "TARGET_VERIFY_SECONDS",
    "TARGET_VERIFY_TXS",
    "BenchError",
    "Check",
    "CpuWatch",
    "HttpResult",
    "InProcessResult",
    "LatencyStats",
    "LedgerBench",
    "Machine",
    "MemorySamples",
    "Progress",
    "ProofResult",
    "SigBaseline",
    "VerifyResult",
    "background_cpu",
    "build_registrations",
    "build_synthetic_log",
    "checks",
    "enrol_gateways",
    "feed",
    "free_port",
    "hwm_kib",
    "memory_check",
    "percentile",
    "rss_kib",
    "run",
    "run_http",
    "run_inprocess",
    "run_proofs",
    "run_verify",
    "signature_baseline",
    "slope_per_100k",
    "synthetic_leaf",
    "tree_rss_kib",
]


# The targets (requirements to compare against, not results).
TARGET_INPROCESS_TPS = 10_000
TARGET_HTTP_TPS = 5_000
TARGET_VERIFY_TXS = 1_000_000
TARGET_VERIFY_SECONDS = 60.0
TARGET_PROOF_LEAVES = 10_000_000
TARGET_PROOF_US = 1_000.0
# "Memory bounded, not growing with chain length" made checkable: over the second half of a run of
# at least MEMORY_MIN_TXS txs, the RSS trend (Theil–Sen) may rise by at most 5 MiB per 100k txs,
# i.e. ~52 bytes per tx: less than the smallest thing a node could keep per tx (a 32-byte id
# alone is a 65-byte object in CPython, ~90 bytes once in a set), more than allocator noise.
TARGET_MEMORY_KIB_PER_100K = 5 * 1024
# The node's allocator memory (heap and anonymous mappings of its process; live Python objects
# stay flat) grows over a run's first ~120k txs and is flat after: 236 -> 259 MiB by 120k, then
# +0.00 MiB per 100k up to 400k (BENCHMARKS.md, "Why 300,000"). The second half of a shorter run is
# still warm-up, so its trend is shown but not judged.
MEMORY_MIN_TXS = 300_000


# -- the whole benchmark ------------------------------------------------------------------


@dataclass
class Check:
    figure: str
    target: str
    measured: str
    passed: bool | None  # None: this run was too small to judge the figure


@dataclass
class LedgerBench:
    machine: Machine
    baseline: SigBaseline
    inprocess: InProcessResult
    http: HttpResult | None
    verify_build: InProcessResult | None
    verify: VerifyResult
    proofs: ProofResult
    checks: list[Check]
    seconds: float
    background_cpu_before: float
    background_cpu_after: float

    def to_doc(self) -> dict[str, Any]:
        return {
            "machine": self.machine.__dict__,
            "baseline": self.baseline.__dict__,
            "inprocess": self.inprocess.to_doc(),
            "http": None if self.http is None else self.http.to_doc(),
            "verify_build": None if self.verify_build is None else self.verify_build.to_doc(),
            "verify": self.verify.__dict__,
            "proofs": self.proofs.to_doc(),
            "checks": [c.__dict__ for c in self.checks],
            "seconds": self.seconds,
            "background_cpu_before": self.background_cpu_before,
            "background_cpu_after": self.background_cpu_after,
        }


def checks(b: LedgerBench) -> list[Check]:
    """Compare a run's figures with the issue's targets."""
    out = []
    ceiling = b.baseline.ceiling_per_s
    ip = b.inprocess
    out.append(
        Check(
            "in-process commit",
            f">= {TARGET_INPROCESS_TPS:,} tx/s",
            f"{ip.tx_per_s:,.0f} tx/s ({ip.tx_per_s / ceiling:.0%} of the in-process Ed25519 "
            f"ceiling of {ceiling:,.0f}/s"
            + (f"; ingress in {ip.admit_processes} processes)" if ip.admit_processes else ")"),
            ip.tx_per_s >= TARGET_INPROCESS_TPS and ip.receipts_ok == ip.txs,
        )
    )
    if b.http is not None:
        h = b.http
        out.append(
            Check(
                "HTTP batch endpoint",
                f">= {TARGET_HTTP_TPS:,} tx/s",
                f"{h.tx_per_s:,.0f} tx/s",
                h.tx_per_s >= TARGET_HTTP_TPS and h.receipts_ok == h.txs,
            )
        )
    v = b.verify
    projected = TARGET_VERIFY_TXS / v.tx_per_s if v.tx_per_s else float("inf")
    big = v.txs >= TARGET_VERIFY_TXS
    out.append(
        Check(
            "full verify",
            f"{TARGET_VERIFY_TXS:,} txs in <= {TARGET_VERIFY_SECONDS:.0f} s",
            f"{v.txs:,} txs in {v.seconds:.1f} s ({v.tx_per_s:,.0f} tx/s"
            + ("" if big else f"; {projected:.0f} s projected for {TARGET_VERIFY_TXS:,}")
            + ")",
            (v.ok and v.seconds * TARGET_VERIFY_TXS / v.txs <= TARGET_VERIFY_SECONDS)
            if big
            else None,
        )
    )
    p = b.proofs
    full = p.leaves >= TARGET_PROOF_LEAVES
    for name, stats in (
        ("inclusion proof", p.inclusion_us),
        ("consistency proof", p.consistency_us),
    ):
        out.append(
            Check(
                name,
                f"<= {TARGET_PROOF_US:,.0f} µs on {TARGET_PROOF_LEAVES:,} entries",
                f"p50 {stats.p50:.0f} µs, p99 {stats.p99:.0f} µs on {p.leaves:,} entries",
                stats.p99 <= TARGET_PROOF_US if full else None,
            )
        )
    runs: list[tuple[str, MemorySamples, int]] = [
        ("node memory (in-process run)", ip.memory, ip.txs)
    ]
    if b.http is not None:
        runs.append(("node memory (HTTP server)", b.http.server_memory, b.http.txs))
    if b.verify_build is not None:
        runs.append(("node memory (verify-chain build)", b.verify_build.memory, b.verify_build.txs))
    out.extend(memory_check(label, mem, txs) for label, mem, txs in runs)
    return out


def memory_check(label: str, mem: MemorySamples, txs: int) -> Check:
    """The "memory bounded" verdict for one run: judged only on runs of ``MEMORY_MIN_TXS`` or
    more, whose second half is past the allocator's warm-up."""
    slope = mem.second_half_slope_per_100k()
    retained = mem.retained_blocks_per_tx()
    measured = (
        f"{mem.first_kib / 1024:,.0f} → {mem.last_kib / 1024:,.0f} MiB over {txs:,} "
        f"txs; second half {slope / 1024:+.2f} MiB per 100k txs"
        + (
            ""
            if retained is None or mem.idle_blocks is None
            else f"; idle Python blocks {mem.idle_blocks[1] - mem.idle_blocks[0]:+,}"
        )
    )
    return Check(
        label,
        f"bounded: second-half RSS trend <= {TARGET_MEMORY_KIB_PER_100K / 1024:g} MiB "
        f"per 100k txs (runs >= {MEMORY_MIN_TXS:,} txs)",
        measured,
        slope <= TARGET_MEMORY_KIB_PER_100K if txs >= MEMORY_MIN_TXS else None,
    )


def run(
    workdir: Path,
    *,
    txs: int = 100_000,
    http_txs: int = 50_000,
    verify_txs: int = 0,
    proof_leaves: int = 1_000_000,
    max_block_txs: int = 2000,
    max_wait: float = 0.02,
    window: int = 4,
    http_concurrency: int = 3,
    admit_processes: int = 0,
    progress: Progress = _quiet,
) -> LedgerBench:
    """Run every workload in ``workdir`` (which must not hold a previous run)."""
    started = time.perf_counter()
    machine = Machine.detect()
    progress("measuring other processes' CPU use for 3 s")
    idle_before = background_cpu(3.0)
    probe = workdir / "probe"
    ws = Workspace.init(probe, "bench-probe")
    key = ws.keyring().signing["hosp-a/root"]
    sample = decode(
        Client(_NoSubmit(), "bench-probe", "hosp-a/root", key).build(
            "registry",
            "register",
            {
                "record_id": "probe",
                "record_type": "Encounter",
                "source_system": "bench-his",
                "content_hash": "0" * 64,
                "schema_version": "fhir-r4/1",
            },
        )
    )
    progress("measuring the Ed25519 verification ceiling")
    baseline = signature_baseline(sample.signed, sample.sigs[0].sig, key.public)
    progress(f"in-process run: {txs:,} txs")
    inproc = run_inprocess(
        workdir / "inprocess",
        txs,
        max_block_txs=max_block_txs,
        max_wait=max_wait,
        window=window,
        tag="enc",
        admit_processes=admit_processes,
        progress=progress,
    )
    if inproc.receipts_ok != txs:
        raise BenchError(
            f"in-process run: only {inproc.receipts_ok} of {txs} receipts ok: {inproc.not_ok}"
        )
    http = None
    if http_txs:
        progress(f"HTTP run: {http_txs:,} txs")
        http = run_http(
            workdir / "http",
            http_txs,
            concurrency=http_concurrency,
            max_block_txs=max_block_txs,
            max_wait=max_wait,
            progress=progress,
        )
        if http.receipts_ok != http_txs:
            raise BenchError(
                f"HTTP run: only {http.receipts_ok} of {http_txs} receipts ok: {http.not_ok}"
            )
    build = None
    db = Path(inproc.store_path)
    if verify_txs:
        progress(f"building a chain of {verify_txs:,} txs to verify")
        build = run_inprocess(
            workdir / "verify",
            verify_txs,
            max_block_txs=max_block_txs,
            max_wait=max_wait,
            window=window,
            tag="ver",
            admit_processes=admit_processes,
            progress=progress,
        )
        if build.receipts_ok != verify_txs:
            raise BenchError(f"verify chain: only {build.receipts_ok} of {verify_txs} ok")
        db = Path(build.store_path)
    progress(f"verifying {db}")
    verified = run_verify(db)
    if not verified.ok:
        raise BenchError(f"verify found problems: {verified.findings}")
    proofs = run_proofs(workdir / "proofs" / "log.db", proof_leaves, progress=progress)
    seconds = time.perf_counter() - started
    idle_after = background_cpu(3.0)
    bench = LedgerBench(
        machine,
        baseline,
        inproc,
        http,
        build,
        verified,
        proofs,
        [],
        seconds,
        idle_before,
        idle_after,
    )
    bench.checks = checks(bench)
    return bench


class _NoSubmit:
    def submit(self, raw: bytes) -> Future[Any]:
        raise BenchError("this client only builds transactions")
