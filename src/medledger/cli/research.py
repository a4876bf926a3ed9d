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


def bench(
    sites: int = typer.Option(10, min=3, help="Sites in the GLM run."),
    rows: int = typer.Option(100_000, min=10, help="Rows per site in the GLM run."),
    covariates: int = typer.Option(10, min=1, help="Covariates (plus an intercept)."),
    shapley_sites: int = typer.Option(300, min=3, help="Sites in the Shapley run."),
    permutations: int = typer.Option(200, min=2, help="Monte Carlo permutations."),
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON."),
) -> None:
    """Federated logistic GLM (plain and with secure aggregation) over sites × rows, and Monte
    Carlo Shapley over shapley-sites (issue 6's targets: 10 s, 5 s)."""
    import json

    from rich.table import Table

    from medledger.research import benchmark

    plain = benchmark.glm_run(sites, rows, covariates)
    secure = benchmark.glm_run(sites, rows, covariates, secure=True)
    shap = benchmark.shapley_run(shapley_sites, permutations, covariates)
    if as_json:
        console.print_json(json.dumps({"glm": plain, "glm_secure": secure, "shapley": shap}))
        return
    t = Table(title="research bench")
    for col in ("figure", "measured", "target"):
        t.add_column(col)
    for r in (plain, secure):
        t.add_row(f"binomial GLM, {covariates} covariates, {sites} sites × {rows:,} rows"
                  f"{' (secure aggregation)' if r['secure'] else ''}",
                  f"{r['seconds']} s ({r['iterations']} rounds)", "≤ 10 s")
    t.add_row(f"Monte Carlo Shapley, {shapley_sites} sites × {permutations} permutations",
              f"{shap['seconds']} s (Σφ − U(N) = {shap['efficiency_gap']:.1e})", "≤ 5 s")
    console.print(t)
