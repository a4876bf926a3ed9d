"""The consent demo end to end, then the ``medledger consent`` commands on its workspace."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medledger.cli.main import app
from medledger.demo import consent as consent_demo

pytestmark = pytest.mark.integration


def test_demo_then_cli_log_and_status(tmp_path: Path) -> None:
    result = consent_demo.run(workdir=tmp_path)
    assert result.ok, result.lines
    lines = dict(result.lines)
    assert lines["next request"].startswith("denied: consent_revoked")
    assert lines["access log"].startswith("7 entries")
    patient = lines["patient (pseudonym)"]
    ws = str(tmp_path / "consortium")
    runner = CliRunner()
    r = runner.invoke(app, ["consent", "log", patient, "--dir", ws, "--verify"])
    assert r.exit_code == 0, r.output
    assert r.output.count("proven in checkpoint") == 7 and "consent_revoked" in r.output
    r = runner.invoke(app, ["consent", "log", patient, "--dir", ws, "--json"])
    items = json.loads(r.output)
    assert [i["entry"]["outcome"] for i in items].count("granted") == 2
    r = runner.invoke(app, ["consent", "status", patient, "--dir", ws])
    assert json.loads(r.output)["consents"]["referral-0001"]["status"] == "revoked"
    r = runner.invoke(app, ["consent", "status", patient, "--dir", ws, "--height", "3"])
    assert json.loads(r.output)["consents"]["referral-0001"]["status"] == "active"
    r = runner.invoke(app, ["consent", "log", "not-a-pseudonym", "--dir", ws])
    assert r.exit_code == 2 and "bad_args" in r.output
