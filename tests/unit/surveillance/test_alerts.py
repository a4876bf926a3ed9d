"""Single-case alerts for severe diseases."""

from __future__ import annotations

import numpy as np

from medledger.surveillance import (
    DEFAULT_SEVERE,
    SingleCaseRule,
    WeekRange,
    single_case,
    single_case_alerts,
)


def test_any_case_is_an_alert() -> None:
    result = single_case(np.array([0, 1, 0, 3, 0], dtype=float), WeekRange(1, 5))
    assert result.alarm_weeks() == [2, 4]
    assert result.upperbound.tolist() == [0.0] * 5


def test_rule_covers_listed_codes_and_their_subcodes_only() -> None:
    rule = SingleCaseRule(frozenset({"A00", "J09"}))
    assert rule.covers("A00") and rule.covers("a00.1") and rule.covers("A009")
    assert rule.covers("J09.X1")
    assert not rule.covers("A01") and not rule.covers("A0") and not rule.covers("J10")
    assert not rule.covers("A00X")
    assert "A20" in DEFAULT_SEVERE and "A00" in DEFAULT_SEVERE


def test_alerts_per_disease_for_configured_diseases() -> None:
    counts = {"A00.9": np.array([0, 0, 1.0]), "A20": np.array([2.0, 0, 0]),
              "A09": np.array([50.0, 60, 70])}
    alerts = single_case_alerts(counts, WeekRange(1, 3))
    assert alerts == {"A00.9": [3], "A20": [1]}
    assert single_case_alerts(counts, WeekRange(1, 3), SingleCaseRule(frozenset({"A09"}))) == {
        "A09": [1, 2, 3]}
