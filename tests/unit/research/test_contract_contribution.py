"""``studies.contribution``: φ, its standard error and leave-one-out are on the ledger, and the
contract recomputes the split from n and φ under the declared rule, refusing one off it."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError
from tests.unit.research.harness import RESEARCHER, SITES, StudyHarness, active

from medledger.research import apportion
from medledger.research.contribution import Shapley, contribution_args

UTILITY = "cd" * 32
BLEND = {"method": "blend", "utility": UTILITY, "shapley_weight_ppm": 500_000}
N = [526, 2154, 1300, 0]
PHI = np.array([0.2231234567, 0.2260000004, -0.0123, 0.0])


def record(rule: dict[str, Any], pool: int = 100_000, *, method: str = "exact") -> dict[str, Any]:
    se = np.zeros(4) if method == "exact" else np.array([0.01, 0.02, 0.005, 0.0])
    sh = Shapley(PHI, se, method, 0 if method == "exact" else 200, 0 if method == "exact" else 7,
                 float(PHI.sum()))  # type: ignore[arg-type]
    return contribution_args("s1", rule, pool, SITES, N, sh, [0.1, 0.12, -0.02, 0.0])


@pytest.mark.parametrize("rule", [
    {"method": "count", "utility": UTILITY}, {"method": "shapley", "utility": UTILITY}, BLEND])
def test_a_split_by_the_declared_rule_is_accepted_with_phi_on_the_ledger(
        rule: dict[str, Any]) -> None:
    h = StudyHarness()
    active(h, contribution=rule)
    args = record(rule, method="monte-carlo")
    h.call(RESEARCHER, "contribution", args)
    stored = h.get("contribution/s1")
    assert stored["utility"] == UTILITY and stored["rule"]["method"] == rule["method"]
    assert (stored["method"], stored["permutations"], stored["seed"]) == ("monte-carlo", 200, 7)
    by_site = {s["site"]: s for s in stored["shares"]}
    assert by_site["hosp-a"]["phi_micro"] == 223_123  # micro-units of the utility
    assert by_site["hosp-b"]["phi_se_micro"] == 20_000
    assert by_site["hosp-c"]["phi_micro"] == -12_300  # signed value kept
    assert by_site["hosp-c"]["loo_micro"] == -20_000
    assert sum(s["revenue"] for s in stored["shares"]) == 100_000
    assert apportion.recheck(h.get("study/s1"), stored) == []
    if rule["method"] != "count":  # blend: ½ · 1300/3980 of the pool, nothing for φ < 0
        assert by_site["hosp-c"]["revenue"] == (0 if rule["method"] == "shapley" else 16_332)


def test_a_split_off_the_rule_is_refused() -> None:
    h = StudyHarness()
    active(h, contribution=BLEND)
    args = record(BLEND)
    shares = [dict(s) for s in args["shares"]]
    shares[0]["revenue"] += 1  # still sums to the pool
    shares[1]["revenue"] -= 1
    assert h.code_of(RESEARCHER, "contribution", {**args, "shares": shares}) == "conflict"
    shares = [dict(s) for s in args["shares"]]
    shares[0]["phi_micro"] += 50_000  # φ inflated, split left as it was
    assert h.code_of(RESEARCHER, "contribution", {**args, "shares": shares}) == "conflict"
    shares = [dict(s) for s in args["shares"]]
    shares[2]["share_ppm"], shares[3]["share_ppm"] = shares[3]["share_ppm"], shares[2]["share_ppm"]
    assert h.code_of(RESEARCHER, "contribution", {**args, "shares": shares}) == "conflict"
    assert h.get("contribution/s1") is None
    h.call(RESEARCHER, "contribution", args)


def test_the_utility_must_be_the_declared_one_and_exact_has_no_error() -> None:
    h = StudyHarness()
    active(h, contribution=BLEND)
    args = record(BLEND)
    assert h.code_of(RESEARCHER, "contribution", {**args, "utility": "ee" * 32}) == "conflict"
    shares = [dict(s) for s in args["shares"]]
    shares[0]["phi_se_micro"] = 5
    assert h.code_of(RESEARCHER, "contribution", {**args, "shares": shares}) == "bad_args"


def test_the_older_shape_without_phi_is_refused_by_the_schema() -> None:
    h = StudyHarness()
    active(h, contribution=BLEND)
    args = record(BLEND)
    old = [{k: v for k, v in s.items() if k in ("site", "n", "share_ppm", "revenue")}
           for s in args["shares"]]
    with pytest.raises(ValidationError, match="phi_micro"):
        h.call(RESEARCHER, "contribution", {"study": "s1", "method": "exact", "shares": old})
