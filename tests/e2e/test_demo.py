"""The demo runs end to end and every check it makes passes."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from medledger.cli.main import app
from medledger.demo import ledger

pytestmark = pytest.mark.slow


def test_demo_scenario_passes() -> None:
    result = ledger.run(records_per_hospital=40)
    assert result.ok
    lines = dict(result.lines)
    assert lines["records registered"].startswith("120 of 120")
    assert "verified by the light client" in lines["inclusion proof"]
    assert lines["full verify"].startswith("OK")
    assert lines["refused at ingress"] == "non_canonical, wrong_chain, member_revoked"


def test_demo_command_exits_zero() -> None:
    out = CliRunner().invoke(app, ["demo", "--records", "20"])
    assert out.exit_code == 0, out.output
    assert "every check passed" in out.output
