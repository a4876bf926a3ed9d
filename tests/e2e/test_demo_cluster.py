"""`medledger demo --cluster`: peer processes, NATS cluster, finality, kill -9, a tampered store
caught with evidence, compare, verify."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from medledger.cli.main import app
from tests.support.services import require_binary

pytestmark = [pytest.mark.slow, pytest.mark.nats, pytest.mark.integration]


def test_cluster_demo_command_exits_zero() -> None:
    require_binary("nats-server")
    out = CliRunner().invoke(app, ["demo", "--cluster", "--records", "30"])
    assert out.exit_code == 0, out.output
    assert "every check passed" in out.output
    assert "identical roots" in out.output
    assert "no divergence" in out.output
    # the edited database is caught by the others (alarm, evidence) and by its own verify
    text = " ".join(out.output.split())  # the table wraps long cells
    assert "alarm naming cdc" in text and "other peers, which stay final without it" in text
    assert "checked with the genesis keys alone" in text
    assert "cdc's own verify first inconsistent height" in text
