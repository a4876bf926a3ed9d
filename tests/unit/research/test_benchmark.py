"""``medledger bench research`` runs end to end on small sizes and reports its figures."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from medledger.cli.main import app


def test_bench_research_small() -> None:
    r = CliRunner().invoke(app, ["bench", "research", "--sites", "3", "--rows", "500",
                                 "--covariates", "3", "--shapley-sites", "20",
                                 "--permutations", "10", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["glm"]["converged"] and out["glm_secure"]["converged"]
    assert out["shapley"]["method"] == "monte-carlo"
    assert out["shapley"]["efficiency_gap"] <= 1e-9
