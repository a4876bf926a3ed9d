"""A peer's admission processes are started with ``spawn``: each is a fresh interpreter that
re-runs the parent's main module unless that module is a package's ``__main__``. These tests
pin what a worker imports when the peer was started as ``python -m medledger`` (the local
cluster) or through the ``medledger`` script (both enter through ``medledger.__main__``):
the admission code and nothing of the command line or the web stack (ADR 0063)."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]

# a parent whose main module is MAIN, as `python -m <MAIN's package>` leaves it; it spawns one
# worker the way the node does, lets it import the admission code, and prints what it holds
PARENT = """
import importlib, json, multiprocessing, sys
from concurrent.futures import ProcessPoolExecutor
main = importlib.import_module({main!r})
sys.modules["__main__"].__spec__ = main.__spec__
from medledger.node import admit
from tests.support.modules import loaded
with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
    pool.submit(admit.worker_ready).result(60)
    print(json.dumps(pool.submit(loaded).result(60)))
"""


def _worker_modules(main: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", PARENT.format(main=main)], cwd=ROOT,
                         capture_output=True, text=True, timeout=120, check=True)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


@pytest.mark.slow
def test_a_worker_of_a_peer_started_as_the_package_imports_no_cli_and_no_web_stack() -> None:
    mods = _worker_modules("medledger.__main__")
    assert "medledger.node.admit" in mods
    for heavy in ("medledger.cli.main", "typer", "fastapi", "pydantic", "medledger.ledger.execute"):
        assert heavy not in mods, heavy


@pytest.mark.slow
def test_a_worker_of_a_peer_started_as_the_cli_module_re_imports_the_cli() -> None:
    # the cost the package entry avoids: spawn re-runs a main module given by its name (as
    # "__mp_main__"), and with it every command module
    mods = _worker_modules("medledger.cli.main")
    assert {"medledger.cli.peer", "typer", "pydantic"} <= mods


def test_the_medledger_script_enters_through_the_package_main() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["scripts"]["medledger"] == "medledger.__main__:main"


def test_importing_the_package_main_loads_no_command() -> None:
    code = "import sys, medledger.__main__; print('medledger.cli.main' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60)
    assert out.stdout.strip() == "False"


def test_python_dash_m_medledger_runs_the_command() -> None:
    out = subprocess.run([sys.executable, "-m", "medledger", "--help"], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "peer" in out.stdout and "cluster" in out.stdout
