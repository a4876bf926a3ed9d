"""Each disclosure rule refuses what it must, at the site, with its reason code."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from medledger.research.disclosure import RULES, Policy
from medledger.research.errors import DisclosureRefused
from medledger.research.site import Site

SITES = ["a", "b", "c"]


def site(n: int = 200, seed: int = 0, **policy: Any) -> Site:
    rng = np.random.default_rng(seed)
    cols = {"age": rng.uniform(20, 80, n), "smoker": (rng.random(n) < 0.3).astype(float),
            "sbp": rng.normal(130, 15, n), "sex": np.where(rng.random(n) < 0.5, "F", "M"),
            "rare": np.r_[np.ones(2), np.zeros(n - 2)], "cost": rng.uniform(1, 2, n)}
    return Site("a", cols, Policy(**policy))


def rule_of(s: Site, analysis: str, params: dict[str, Any], sites: list[str] = SITES) -> str:
    with pytest.raises(DisclosureRefused) as info:
        s.answer({"study": "s", "analysis": analysis, "sites": sites, "params": params})
    assert info.value.rule in RULES
    return info.value.rule


GLM = {"family": "gaussian", "y": "sbp", "x": ["age"], "beta": [0.0, 0.0]}


def test_min_sites() -> None:
    assert rule_of(site(), "moments", {"variable": "age"}, ["a", "b"]) == "min_sites"


def test_min_rows_per_analysis() -> None:
    assert rule_of(site(n=8), "glm", GLM) == "min_rows"
    assert rule_of(site(n=4), "crosstab", {"levels": {"sex": ["F", "M"]}}) == "min_rows"


def test_min_cell_refuses_small_nonzero_cells_and_allows_zeros() -> None:
    s = site()
    assert rule_of(s, "crosstab", {"levels": {"rare": [0.0, 1.0]}}) == "min_cell"
    ok = s.answer({"sites": SITES, "analysis": "crosstab",
                   "params": {"levels": {"sex": ["F", "M", "X"]}}})
    assert ok["values"]["counts"][2] == 0  # an empty level is released by default


def test_zero_cells_refused_when_policy_says_so() -> None:
    s = site(zeros_disclosive=True)
    assert rule_of(s, "crosstab", {"levels": {"sex": ["F", "M", "X"]}}) == "min_cell"


def test_small_cells_suppressed_when_policy_says_so() -> None:
    out = site(suppress_small_cells=True).answer(
        {"sites": SITES, "analysis": "crosstab", "params": {"levels": {"rare": [0.0, 1.0]}}})
    assert out["values"]["counts"] == [198, 0]


def test_param_ratio() -> None:
    params = {**GLM, "x": ["age", "smoker", "cost", "sbp"], "y": "sbp", "beta": [0.0] * 5}
    assert rule_of(site(n=12), "glm", params) == "param_ratio"


def test_binary_level_in_glm() -> None:
    params = {**GLM, "x": ["age", "rare"], "beta": [0.0] * 3}
    assert rule_of(site(), "glm", params) == "binary_level"


def test_indicator_mean_attack_is_blocked() -> None:
    """dsBase#250: the mean of x·1[row = i] is x_i / n — one value dominates the sum."""
    s = site()
    target = np.zeros(200)
    target[17] = float(s.columns["sbp"][17])
    s.columns = {**s.columns, "probe": target}  # type: ignore[misc]
    assert rule_of(s, "moments", {"variable": "probe"}) == "dominance"


def test_p_ratio_on_a_sum() -> None:
    values = np.r_[100.0, 1.0, 1.0, np.full(5, 0.5)]  # top two: 0.966; rest 3.5 < 10
    policy = Policy(dominance_k=0.99)
    with pytest.raises(DisclosureRefused) as info:
        policy.check_sum("x", values)
    assert info.value.rule == "p_ratio"
    Policy().check_sum("x", np.full(20, 3.0))  # balanced contributions pass


def test_columns_allow_and_deny_lists() -> None:
    assert rule_of(site(disallowed_columns=frozenset({"age"})), "moments",
                   {"variable": "age"}) == "column"
    assert rule_of(site(allowed_columns=frozenset({"sbp"})), "glm", GLM) == "column"


def test_policy_hash_is_recorded_and_changes_with_thresholds() -> None:
    out = site().answer({"sites": SITES, "analysis": "moments", "params": {"variable": "age"}})
    assert out["policy"] == Policy().digest() != Policy(min_cell=5).digest()


def test_refusal_message_names_no_value() -> None:
    s = site()
    target = np.zeros(200)
    target[3] = 123.456789
    s.columns = {**s.columns, "probe": target}  # type: ignore[misc]
    with pytest.raises(DisclosureRefused) as info:
        s.answer({"sites": SITES, "analysis": "moments", "params": {"variable": "probe"}})
    assert "123.45" not in str(info.value)


def test_study_terms_tighten_but_never_loosen_a_site_policy() -> None:
    s = site()
    q = {"sites": SITES, "analysis": "crosstab", "params": {"levels": {"sex": ["F", "M"]}}}
    loose = s.answer({**q, "disclosure": {"min_cell": 1, "min_sites": 1}})
    assert loose["policy"] == Policy().digest()  # nothing lowered
    with pytest.raises(DisclosureRefused) as info:
        s.answer({**q, "disclosure": {"min_cell": 150}})
    assert info.value.rule == "min_cell"
    assert info.value.policy == Policy(min_cell=150).digest()
    assert s.policy == Policy()  # the site's own policy is unchanged
    tight = Policy().tightened({"glm_max_param_ratio_ppm": 100_000, "dominance_k_ppm": 950_000,
                                "p_ratio_ppm": 200_000})
    assert (tight.glm_max_param_ratio, tight.dominance_k, tight.p_ratio) == (0.1, 0.9, 0.2)
