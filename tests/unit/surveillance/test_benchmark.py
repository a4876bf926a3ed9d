"""The benchmark's building blocks on small sizes: the concatenated EARS run is the per-series
run, and both runs report what they measured."""

from __future__ import annotations

from medledger.surveillance import benchmark


def test_concatenated_ears_equals_per_series_runs() -> None:
    assert benchmark.check_ears_equivalence(n_series=7, days=45, seed=3)


def test_runs_report_their_figures() -> None:
    far = benchmark.farrington_run(districts=2, diseases=3, weeks=280, processes=1)
    assert far["series"] == 6 and far["weeks"] == 280 and far["undefined"] == 0
    assert far["alarms"] >= far["red"] >= 0 and far["seconds"] > 0
    ears = benchmark.ears_run(n_series=3, days=40)
    assert ears["C1"]["tested"] == 3 * (40 - 7) and ears["C3"]["tested"] == 3 * (40 - 11)
    assert ears["ok"] is True
