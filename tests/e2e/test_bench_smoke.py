"""The benchmark runs end to end at a tiny size and reports checked figures."""

from __future__ import annotations

from pathlib import Path

import pytest

from medledger.bench import ledger as bench

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def test_bench_runs_small(tmp_path: Path) -> None:
    result = bench.run(tmp_path / "bench", txs=2_000, http_txs=1_000, proof_leaves=5_000,
                       max_block_txs=500, max_wait=0.005)
    assert result.inprocess.txs == 2_000 and result.inprocess.tx_per_s > 0
    assert result.http is not None
    assert result.verify.ok and result.verify.txs >= 2_000 and not result.verify.findings
    figures = {c.figure: c for c in result.checks}
    assert {"in-process commit", "HTTP batch endpoint", "full verify"} <= set(figures)
    # too small a run to judge the million-transaction figure
    assert figures["full verify"].passed is None
    assert result.to_doc()["machine"]["nproc"] >= 1
