"""Shared CLI bits: the workspace option, error rendering, the console."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from medledger.errors import MedLedgerError
from medledger.workspace import Workspace

console = Console()
err_console = Console(stderr=True)

WorkspaceOpt = typer.Option(
    Path("medledger-data"), "--dir", "-d", envvar="MEDLEDGER_DIR",
    help="Workspace directory (genesis, keys, store).",
)


def workspace(path: Path) -> Workspace:
    ws = Workspace(path)
    try:
        ws.config  # noqa: B018 - raises a clear error when the directory is not a workspace
    except MedLedgerError as exc:
        fail(exc)
    return ws


def fail(exc: MedLedgerError, exit_code: int = 2) -> None:
    err_console.print(f"[bold red]error[/] [{exc.code}] {exc.message}")
    raise typer.Exit(exit_code)
