"""The declared-rule revenue split (``apportion``) against an independent computation: exact
shares as ``Fraction``s, then Hamilton's largest-remainder method written out plainly."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from medledger.research import apportion

SITES = ["hosp-a", "hosp-b", "hosp-c", "hosp-d"]


def reference(rule: dict[str, Any], total: int, sites: list[str], n: list[int],
              phi: list[int]) -> list[int]:
    """Exact rational shares, floors, then one extra unit each to the largest fractional parts
    (ties: lower site id). Negative φ counts as 0; an all-zero part is split equally."""
    lam = {"count": Fraction(0), "shapley": Fraction(1),
           "blend": Fraction(rule.get("shapley_weight_ppm", 1_000_000), 1_000_000)}[
        rule["method"]]
    pos = [max(p, 0) for p in phi]
    k = len(sites)
    by_n = [Fraction(c, sum(n)) if sum(n) else Fraction(1, k) for c in n]
    by_phi = [Fraction(p, sum(pos)) if sum(pos) else Fraction(1, k) for p in pos]
    exact = [total * ((1 - lam) * a + lam * b) for a, b in zip(by_n, by_phi, strict=True)]
    parts = [int(x) for x in exact]  # floor: x >= 0
    left = total - sum(parts)
    ranked = sorted(range(k), key=lambda i: (-(exact[i] - parts[i]), sites[i]))
    for i in ranked[:left]:
        parts[i] += 1
    return parts


RULES = [{"method": "count", "utility": "cd" * 32},
         {"method": "shapley", "utility": "cd" * 32},
         {"method": "blend", "utility": "cd" * 32, "shapley_weight_ppm": 500_000},
         {"method": "blend", "utility": "cd" * 32, "shapley_weight_ppm": 333_333}]


@given(rule=st.sampled_from(RULES), total=st.integers(0, 10**12),
       n=st.lists(st.integers(0, 10**6), min_size=4, max_size=4),
       phi=st.lists(st.integers(-10**6, 10**6), min_size=4, max_size=4))
def test_split_equals_the_exact_fraction_reference(rule: dict[str, Any], total: int,
                                                   n: list[int], phi: list[int]) -> None:
    got = apportion.split(rule, total, SITES, n, phi)
    assert got == reference(rule, total, SITES, n, phi)
    assert sum(got) == total


def test_examples_by_hand() -> None:
    shapley = RULES[1]
    # 100 over φ 1:1:1 → 33.33 each; the leftover unit goes to the lowest site id
    assert apportion.split(shapley, 100, ["c", "a", "b"], [1, 1, 1], [5, 5, 5]) == [33, 34, 33]
    # negative φ is paid nothing; its signed value does not reduce the others
    assert apportion.split(shapley, 90, ["a", "b", "c"], [1, 1, 1], [-7, 2, 1]) == [0, 60, 30]
    # count ignores φ; blend 50 %: a = 0.5·(1/4) + 0.5·(0) of 1000 = 125
    assert apportion.split(RULES[0], 1000, ["a", "b"], [1, 3], [9, 0]) == [250, 750]
    assert apportion.split(RULES[2], 1000, ["a", "b"], [1, 3], [0, 9]) == [125, 875]
    # nobody added value: the Shapley part is split equally
    assert apportion.split(shapley, 10, ["a", "b"], [1, 9], [0, -3]) == [5, 5]


def test_ties_go_to_the_lower_site_id_whatever_the_order() -> None:
    for order in (["b", "a", "c"], ["c", "b", "a"], ["a", "b", "c"]):
        got = dict(zip(order, apportion.split(RULES[0], 2, order, [1, 1, 1], [0, 0, 0]),
                       strict=True))
        assert got == {"a": 1, "b": 1, "c": 0}


def test_an_unknown_rule_is_an_error() -> None:
    with pytest.raises(ValueError, match="rule"):
        apportion.split({"method": "votes"}, 10, ["a"], [1], [1])


def test_recheck_reports_a_split_off_the_rule_and_reads_older_records() -> None:
    terms = {"sites": ["a", "b"], "revenue_pool": 10, "contribution": RULES[1]}
    good = [{"site": "a", "n": 5, "phi_micro": 3, "share_ppm": 750_000, "revenue": 8},
            {"site": "b", "n": 5, "phi_micro": 1, "share_ppm": 250_000, "revenue": 2}]
    record = {"utility": "cd" * 32, "shares": good}
    assert apportion.recheck(terms, record) == []
    bad = [{**good[0], "revenue": 7}, {**good[1], "revenue": 3}]
    assert apportion.recheck(terms, {**record, "shares": bad}) == [
        "contribution: a revenue 7, the rule gives 8",
        "contribution: b revenue 3, the rule gives 2"]
    assert "utility" in apportion.recheck(terms, {**record, "utility": "ee" * 32})[0]
    legacy = [{k: v for k, v in s.items() if k != "phi_micro"} for s in good]
    assert "cannot be rechecked" in apportion.recheck(terms, {"shares": legacy})[0]
    count_terms = {**terms, "contribution": RULES[0]}
    even = [{**s, "share_ppm": 500_000, "revenue": 5} for s in legacy]
    assert apportion.recheck(count_terms, {"shares": even}) == []
