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


@pytest.mark.nats
def test_cluster_bench_runs_small(tmp_path: Path) -> None:
    from medledger.bench import cluster as cbench
    from tests.support.services import require_binary

    require_binary("nats-server")
    r = cbench.run(tmp_path, peers=4, txs=600, batch=100, rate=30, paced_seconds=2)
    # throughput is measured with every peer running, the non-submitting one included
    assert r.txs == 600 and set(r.per_peer_tps) == {"hosp-a", "hosp-b", "hosp-c", "cdc"}
    assert all(v > 0 for v in r.per_peer_tps.values())
    assert 1 <= r.blocks <= 600  # the blocks that load took (each holds at least one tx)
    # the stopped peer replays (part of) the second load after its first health answer, or
    # all of it before (600 txs can take less than its HTTP server's start): then the whole
    # load is timed from the process start, and the bench says so
    assert 0 < r.catchup_txs <= 600 and r.catchup_tps > 0 and r.behind_seconds > 0
    assert r.catchup_txs == 600 or not r.catchup_from_start
    assert r.paced_txs > 0 and 0 < r.paced_p50_ms <= r.paced_p99_ms
    assert len(r.ed25519_per_s) == 3 and all(x > 100 for x in r.ed25519_per_s)
    assert {row[0] for row in cbench.summary(r)} >= {
        "committed tx/s, slowest peer", "catch-up replay",
        "machine: Ed25519 verifications/s, one thread"}


@pytest.mark.nats
def test_cluster_bench_faults_small(tmp_path: Path) -> None:
    """`bench cluster --faults` at a tiny size: every fault the issue names, with its outcome."""
    from medledger.bench import cluster as cbench
    from tests.support.services import require_binary

    require_binary("nats-server")
    r = cbench.run(tmp_path, peers=4, txs=300, batch=100, rate=0, faults=True, fault_txs=900)
    f = r.faults
    assert f["lost"] == 0 and f["duplicated"] == 0 and f["acked"] == 900, f
    assert f["killed_peer_caught_up_identical"] and f["stale_sequencer_refused"], f
    cut = f["cut_off"]
    assert cut["peer"] == "cdc" and cut["held"] and cut["identical"], cut
    assert cut["committed_meanwhile"] >= 900 // 6 and cut["cut_s"] >= cbench.CUT_SECONDS, cut
    t = f["tamper"]
    assert t["alarmed_by"] == t["others"] == 3 and t["alarm_s"] is not None, t
    assert t["evidence_names_it"] and t["own_verify_first_bad"] == t["edited_height"], t
    rows = {row[0]: row[1] for row in cbench.summary(r)}
    assert "held still" in rows["peer cut off from NATS"]
    assert "3 of 3 peers" in rows["tampered peer store"]
    # the paced phase was skipped: said so, not shown as 0 ms beside its target
    assert rows["submit-to-final p50 / p99 at 0 tx/s"] == "not run (--rate 0)"
