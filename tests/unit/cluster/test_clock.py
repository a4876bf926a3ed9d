"""``ClockSkew``: block time minus this peer's clock, sampled only at the head."""

from __future__ import annotations

import pytest

from medledger.cluster.clock import ClockSkew


class Clock:
    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def test_samples_only_blocks_seen_at_the_head_after_a_block_at_the_head() -> None:
    clock = Clock(1_000_000)
    skew = ClockSkew(30_000, clock=clock)
    skew.observe(500_000, 1, lag=3)  # replaying a backlog: old block times are not skew
    skew.observe(600_000, 2, lag=0)  # the backlog's last block, read with the others
    assert skew.skew_ms is None and skew.alarm() is None
    assert skew.status() == {"clock_skew_ms": None, "clock_skew_height": 0}
    skew.observe(1_000_020, 3, lag=0)  # now fresh blocks at the head
    assert skew.status() == {"clock_skew_ms": 20, "clock_skew_height": 3}
    assert skew.alarm() is None


def test_one_late_block_does_not_move_the_estimate_a_trend_does() -> None:
    clock = Clock(10_000_000)
    skew = ClockSkew(30_000, clock=clock)
    for h in range(1, 4):
        skew.observe(10_000_000 - 10, h, lag=0)
    skew.observe(10_000_000 - 60_000, 4, lag=0)  # delivered a minute late (a reconnection)
    assert skew.skew_ms == -10 and skew.alarm() is None
    skew.observe(10_000_000 - 60_000, 5, lag=0)  # two in a row: the sequencer is behind
    assert skew.skew_ms == -60_000
    assert skew.alarm() == {"kind": "clock_skew", "skew_ms": -60_000, "threshold_ms": 30_000}
    for h, t in enumerate((600_000, 600_000, 600_000), start=6):  # block time held ahead ...
        clock.now = t - 580_000 + h  # ... while this clock advances: the estimate follows
        skew.observe(t, h, lag=0)
    assert skew.status() == {"clock_skew_ms": 580_000 - 7, "clock_skew_height": 8}


def test_ahead_alarms_above_the_threshold_only_and_zero_disables() -> None:
    clock = Clock(0)
    on, off = ClockSkew(30_000, clock=clock), ClockSkew(0, clock=clock)
    for s in (on, off):
        s.observe(30_000, 1, lag=0)
        s.observe(30_000, 2, lag=0)
    assert on.skew_ms == 30_000 and on.alarm() is None  # |skew| must exceed the threshold
    for s in (on, off):
        s.observe(600_000, 3, lag=0)
        s.observe(600_000, 4, lag=0)
    assert on.alarm() == {"kind": "clock_skew", "skew_ms": 600_000, "threshold_ms": 30_000}
    assert off.skew_ms == 600_000 and off.alarm() is None


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        ClockSkew(-1)
    with pytest.raises(ValueError):
        ClockSkew(1, window=0)


def test_cluster_status_renders_every_alarm_kind() -> None:
    from medledger.cli.cluster import _alarm

    assert _alarm({"kind": "equivocation", "org": "cdc", "height": 7}) == "cdc@7"
    assert _alarm({"kind": "clock_skew", "skew_ms": -600_400, "threshold_ms": 30_000}) == \
        "clock -600 s"
    assert _alarm({"kind": "range_mismatch", "height": 12}) == "txs@12 ≠ cut"
    assert _alarm({"kind": "from_a_newer_peer", "height": 3}) == "from_a_newer_peer"
