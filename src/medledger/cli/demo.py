"""``medledger demo``: the whole story on a throwaway embedded consortium."""

from __future__ import annotations

import typer
from rich.table import Table

from medledger.cli.common import console
from medledger.demo import ledger


def demo(
    records: int = typer.Option(400, min=10, help="Records each hospital registers."),
    cluster: bool = typer.Option(False, "--cluster", help="Run on a local cluster instead: "
                                 "3 NATS servers and one peer process per organisation."),
) -> None:
    """Run a throwaway consortium through a realistic workload and verify it."""
    if cluster:
        from medledger.demo import cluster as cluster_demo

        console.rule("[bold]MedLedger demo[/] — cluster: peer processes, NATS JetStream "
                     "ordering, cosigned checkpoints")
        result = cluster_demo.run(records_per_hospital=records)
    else:
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
