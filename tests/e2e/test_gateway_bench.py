"""``medledger bench gateway`` runs end to end on a small file and reports sane figures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medledger.cli.main import app

pytestmark = pytest.mark.slow


def test_bench_gateway_small(tmp_path: Path) -> None:
    out = CliRunner().invoke(app, ["bench", "gateway", "--rows", "3000", "--json",
                                   "--workdir", str(tmp_path / "w")])
    assert out.exit_code == 0, out.output
    doc = json.loads(out.output[out.output.index("{"):])
    assert doc["rows"] == 3000 and doc["emitted"] == 3000 and doc["quarantined"] == 0
    assert doc["verify_ok"] and doc["batches"] == 1 and doc["rows_per_s"] > 0
    assert doc["target_rows_per_s"] == 5000 and doc["passed"] == (doc["rows_per_s"] >= 5000)
    assert doc["workers"] == 2 and doc["cpu_us_per_row"] > 0 and len(doc["load_avg"]) == 2
