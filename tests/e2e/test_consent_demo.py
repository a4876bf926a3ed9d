"""``medledger demo --consent`` runs end to end on hosp-a's gateway vault and every check passes."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from medledger.cli.main import app

pytestmark = pytest.mark.slow


def test_consent_demo_command_exits_zero() -> None:
    out = CliRunner().invoke(app, ["demo", "--consent"])
    assert out.exit_code == 0, out.output
    text = " ".join(out.output.split())
    assert "gateway vault (hosp-a)" in text and "from hosp-a's vault decrypted by hosp-b" in text
    assert "denied: consent_revoked" in text and "7 entries, every one proven" in text
    assert "every check passed" in text
