"""``medledger demo --research`` runs end to end on vault-backed sites and every check in it
passes."""

from __future__ import annotations

from pathlib import Path

import pytest

from medledger.demo import research

pytestmark = pytest.mark.integration


def test_research_demo(tmp_path: Path) -> None:
    result = research.run(tmp_path)
    lines = dict(result.lines)
    assert result.ok, result.lines
    assert lines["approval without committee signature"] == "refused: missing_cosignature"
    assert "recorded queries only" in lines["query not on the ledger"]
    assert "consenting patients' rows" in lines["federated logistic GLM"]
    assert "withdrew" in lines["consent revoked"]
    assert lines["privacy budget left"] == "ε = 0.0 of 1.0"
    assert "refused before any site was asked" in lines["third DP query"]
    assert lines["DP Kaplan–Meier, stroke-free (ε = 0.5)"].startswith("1 y 0.")
    assert lines["after a one-byte change"].startswith("q1/response-")
    assert lines["a split off the rule"].startswith("refused: conflict")
    assert lines["revenue split recheck"].startswith("follows the declared rule")
    assert "leave-one-out" in lines["contribution (50 % Shapley + 50 % rows)"]
    assert lines["full verify"].startswith("OK")
