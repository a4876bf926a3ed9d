"""The verify workload.

:func:`run_verify` — ``verify_store`` over a chain built by
:func:`medledger.bench.inprocess.run_inprocess`.

``verify_store`` starts worker processes with the ``spawn`` method: a script calling
:func:`run_verify` needs the ``if __name__ == "__main__":`` guard.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from medledger.bench.machine import CpuWatch, hwm_kib
from medledger.installed import default_registry
from medledger.ledger.store.sqlite import SQLiteStore
from medledger.ledger.verify import verify_store


@dataclass
class VerifyResult:
    ok: bool
    blocks: int
    txs: int
    checkpoints: int
    seconds: float
    tx_per_s: float
    findings: list[str]
    peak_rss_mib: float
    other_cpu_pct: float


def run_verify(db: Path) -> VerifyResult:
    """``verify_store`` over the store at ``db`` (its default: one replay process per core for
    large chains)."""
    store = SQLiteStore(db)
    watch = CpuWatch()
    try:
        report = verify_store(store, default_registry())
    finally:
        store.close()
    return VerifyResult(
        ok=report.ok,
        blocks=report.blocks,
        txs=report.txs,
        checkpoints=report.checkpoints,
        seconds=report.seconds,
        tx_per_s=report.txs / report.seconds if report.seconds else 0.0,
        findings=[f"height {f.height}: {f.check}: {f.detail}" for f in report.findings[:5]],
        peak_rss_mib=round(hwm_kib() / 1024, 1),
        other_cpu_pct=watch.other_pct(),
    )
