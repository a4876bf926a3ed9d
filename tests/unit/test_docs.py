"""Docs that cannot go stale: the CLI reference and the README's commands."""

from __future__ import annotations

import re
from pathlib import Path

from medledger.cli.docgen import render

ROOT = Path(__file__).resolve().parents[2]


def test_cli_reference_matches_the_cli() -> None:
    current = (ROOT / "docs" / "cli.md").read_text()
    assert current == render(), "docs/cli.md is stale: run python -m medledger.cli.docgen"


def test_readme_commands_exist() -> None:
    readme = (ROOT / "README.md").read_text()
    reference = render()
    lines = [ln.split()[1:] for ln in readme.splitlines() if ln.startswith("medledger ")]
    assert len(lines) >= 5
    for tokens in lines:
        words = []
        for t in tokens:
            if not re.fullmatch(r"[a-z][a-z-]*", t):
                break
            words.append(t)
        assert f"## `medledger {' '.join(words)}`" in reference, f"README names {words}"


def test_readme_two_commands_match_ci() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "make demo" in readme and "make test" in readme
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^make test$", ci, re.M), ".ci/run must run exactly the README's test command"
