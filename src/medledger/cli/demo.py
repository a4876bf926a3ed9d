"""``medledger demo``: the whole story on a throwaway embedded consortium."""

from __future__ import annotations

import typer
from rich.table import Table

from medledger.cli.common import console
from medledger.demo import ledger


def demo(
    records: int = typer.Option(400, min=10, help="Records each hospital registers."),
) -> None:
    """Run a throwaway consortium through a realistic workload and verify it."""
    console.rule("[bold]MedLedger demo[/] — embedded node, SQLite, in-process ordering")
    result = ledger.run(records_per_hospital=records)
    table = Table(show_header=False, box=None, padding=(0, 2))
    for what, value in result.lines:
        table.add_row(f"[bold]{what}[/]", value)
    console.print(table)
    if not result.ok:
        console.print("[bold red]demo found a problem[/]")
        raise typer.Exit(1)
    console.print("[green]demo finished: every check passed[/]")
