"""Smoke test of ``medledger bench consent`` at a small scale."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medledger.cli.main import app

pytestmark = pytest.mark.integration


def test_bench_consent_small(tmp_path: Path) -> None:
    r = CliRunner().invoke(app, ["bench", "consent", "--consents", "300", "--checks", "200",
                                 "--records", "40", "--workdir", str(tmp_path), "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output[r.output.index("{"):])
    assert doc["consents"] == 300 and doc["granted_share"] == 1.0
    assert 0 < doc["check_us"]["p50"] <= doc["check_us"]["max"]
    assert doc["records"] == 40 and doc["exchange_ms"]["total"] > 0
