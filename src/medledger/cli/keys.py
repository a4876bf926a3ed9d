"""``medledger keys expiring``: keys and memberships that end soon."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import typer
from rich.table import Table

from medledger.cli.common import WorkspaceOpt, console, workspace
from medledger.consortium.expiry import expiring

app = typer.Typer(help="Key management reports.", no_args_is_help=True)


@app.command("expiring")
def expiring_cmd(
    days: int = typer.Option(30, min=0, help="Report what ends within this many days."),
    directory: Path = WorkspaceOpt,
) -> None:
    """List members and keys whose validity ends within DAYS (exit 1 if any)."""
    store = workspace(directory).store()
    rows = expiring(store, time.time_ns() // 1_000_000, days * 86_400_000)
    if not rows:
        console.print(f"nothing expires within {days} days")
        return
    table = Table("member", "key", "valid until (UTC)", "state")
    for r in rows:
        until = datetime.fromtimestamp(r.not_after / 1000, UTC).strftime("%Y-%m-%d %H:%M")
        table.add_row(r.member, r.kid or "(membership)", until,
                      "[red]expired[/]" if r.expired else "[yellow]expiring[/]")
    console.print(table)
    raise typer.Exit(1)
