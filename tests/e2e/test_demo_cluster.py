"""`medledger demo --cluster`: peer processes, NATS cluster, finality, kill -9, compare, verify."""

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
