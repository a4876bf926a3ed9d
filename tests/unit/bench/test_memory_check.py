"""The benchmark's "memory bounded" verdict judges only runs long enough to be past warm-up."""

from __future__ import annotations

from medledger.bench.ledger import MEMORY_MIN_TXS, TARGET_MEMORY_KIB_PER_100K, memory_check
from medledger.bench.machine import MemorySamples

MIB = 1024


def _samples(txs: int, rss_mib: list[float]) -> MemorySamples:
    """Ten samples, one after every tenth of ``txs``, with the given RSS in MiB."""
    assert len(rss_mib) == 10
    return MemorySamples(
        before_kib=int(rss_mib[0] * MIB),
        samples=[(txs * (i + 1) // 10, int(r * MIB)) for i, r in enumerate(rss_mib)],
    )


# Shapes measured on the node (BENCHMARKS.md, "Why 300,000"): a rise over ~120k txs, then flat.
WARMING = [227, 230, 235, 238, 242, 246, 249, 252, 255, 258]
PLATEAU = [236, 246, 259, 259, 259, 258, 258, 258, 258, 258]


def test_a_run_still_warming_up_is_shown_but_not_judged() -> None:
    check = memory_check("node memory", _samples(100_000, WARMING), 100_000)
    assert check.passed is None
    assert "227 → 258 MiB over 100,000 txs" in check.measured
    # the same curve would fail if it were judged: the rule is what keeps it from a false FAIL
    assert _samples(100_000, WARMING).second_half_slope_per_100k() > TARGET_MEMORY_KIB_PER_100K


def test_a_long_run_past_warm_up_passes() -> None:
    check = memory_check("node memory", _samples(400_000, PLATEAU), 400_000)
    assert check.passed is True
    assert f"runs >= {MEMORY_MIN_TXS:,} txs" in check.target


def test_a_long_run_that_keeps_growing_fails() -> None:
    growing = [200 + 4 * i for i in range(10)]  # 4 MiB per 30k txs = 13.3 MiB per 100k
    check = memory_check("node memory", _samples(MEMORY_MIN_TXS, growing), MEMORY_MIN_TXS)
    assert check.passed is False
    assert "+13.33 MiB per 100k txs" in check.measured


def test_the_minimum_run_is_past_the_measured_warm_up() -> None:
    # the plateau came at ~120k txs; the second half of a judged run must start after it
    assert MEMORY_MIN_TXS // 2 > 120_000
