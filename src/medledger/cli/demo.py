"""``medledger demo``: the whole story on a throwaway embedded consortium."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from medledger.cli.common import console
from medledger.demo import ledger


def demo(
    records: int = typer.Option(400, min=10, help="Records each hospital registers."),
    cluster: bool = typer.Option(False, "--cluster", help="Run on a local cluster instead: "
                                 "3 NATS servers and one peer process per organisation."),
    surveillance: bool = typer.Option(False, "--surveillance", help="Run the surveillance "
                                      "scenario: case reports, an outbreak, its alert."),
    gateway: bool = typer.Option(False, "--gateway", help="Run the gateway scenario: three "
                                 "hospitals' messy exports → FHIR, de-identified, vaulted, "
                                 "anchored, evaluated, verified."),
    consent: bool = typer.Option(False, "--consent", help="Run the consent scenario: a "
                                 "referral exchange, revocation, denial, break-glass, and the "
                                 "patient's access log with proofs."),
    research: bool = typer.Option(False, "--research", help="Run the research scenario: a "
                                  "study from site approvals to a secure federated GLM, DP "
                                  "releases, audit verify and the revenue split."),
    png: Path = typer.Option(Path("medledger-epicurve.png"), help="--surveillance: write the "
                             "epidemic curve here."),
) -> None:
    """Run a throwaway consortium through a realistic workload and verify it."""
    if research:
        from medledger.demo import research as research_demo

        console.rule("[bold]MedLedger demo[/] — research: federated study, privacy budget, "
                     "contribution")
        result = research_demo.run()
    elif consent:
        from medledger.demo import consent as consent_demo

        console.rule("[bold]MedLedger demo[/] — consent: referral exchange, revocation, "
                     "access log")
        result = consent_demo.run()
    elif gateway:
        from medledger.demo import gateway as gateway_demo

        console.rule("[bold]MedLedger demo[/] — hospital data gateway: three hospitals, "
                     "reconciliation, accuracy, provenance")
        result = gateway_demo.run()
    elif surveillance:
        from medledger.demo import surveillance as surveillance_demo

        console.rule("[bold]MedLedger demo[/] — surveillance: case reports, aggregation, alert")
        result = surveillance_demo.run(png=png)
    elif cluster:
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
