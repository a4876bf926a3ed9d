"""``medledger research``: check a study's audit bundle against the ledger."""

from __future__ import annotations

from pathlib import Path

import typer

from medledger.cli.common import WorkspaceOpt, console, error, workspace
from medledger.research import audit

app = typer.Typer(help="Federated research: studies, audit.", no_args_is_help=True)


@app.command("verify")
def verify(
    bundle: Path = typer.Argument(..., help="Audit bundle directory (one folder per query)."),
    study: str = typer.Option(..., "--study", help="Study id on the ledger."),
    ws_dir: Path = WorkspaceOpt,
) -> None:
    """Recompute every query, response and result hash in BUNDLE and compare with the ledger;
    exit 1 naming each file whose bytes differ from what was recorded."""
    if not bundle.is_dir():
        error("not_found", f"no bundle directory {bundle}")
    store = workspace(ws_dir).store()
    try:
        checked, problems = audit.verify(store, study, bundle)
    finally:
        store.close()
    for p in problems:
        console.print(f"[red]mismatch[/] {p}")
    if problems or not checked:
        error("verify_failed", f"{len(problems)} of {checked} hashes differ" if checked
              else "bundle holds no files", exit_code=1)
    console.print(f"ok: {checked} hashes match the ledger for study {study}")
