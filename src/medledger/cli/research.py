"""``medledger research``: run a vault-backed site, show the variable map, check a study's audit
bundle against the ledger."""

from __future__ import annotations

from pathlib import Path

import typer

from medledger.cli.common import WorkspaceOpt, console, error, fail, workspace
from medledger.errors import MedLedgerError
from medledger.research import apportion, audit

app = typer.Typer(help="Federated research: sites, studies, audit.", no_args_is_help=True)


@app.command("site")
def site(
    name: str = typer.Option(..., "--name", help="The site's organisation id (as on the ledger)."),
    vault: Path = typer.Option(..., "--vault", help="The site's gateway vault directory."),
    ledger: str = typer.Option(..., "--ledger", help="Workspace directory of the site's node, "
                               "its store file or a postgresql:// store URI: studies, queries "
                               "and consents are read there."),
    port: int = typer.Option(8600, "--port", help="Port to serve on (127.0.0.1)."),
    vault_key: Path | None = typer.Option(None, "--vault-key",
                                          help="Vault key file (default VAULT/vault.key)."),
    variables: Path | None = typer.Option(None, "--variables",
                                          help="Variable map TOML (default: built in)."),
    policy: Path | None = typer.Option(None, "--policy",
                                       help="Disclosure thresholds, JSON (default: defaults)."),
    audit_log: Path | None = typer.Option(None, "--audit-log",
                                          help="The site's own append-only audit log (JSON "
                                          "lines, hash-chained; continued if it exists, "
                                          "refused if its chain is broken)."),
    ledger_wait: float = typer.Option(5.0, "--ledger-wait", min=0.0,
                                      help="Seconds a query recorded at a height this site's "
                                      "ledger has not reached yet waits for it before it is "
                                      "refused."),
) -> None:
    """Serve one research site over HTTP whose rows come from its gateway vault: only patients
    whose consent on the ledger covers research for the study at the query's height, only the
    study's variables, only queries recorded on the ledger (docs/research.md)."""
    from medledger.research.http import open_vault_site, serve

    try:
        s = open_vault_site(name, vault, ledger, vault_key=vault_key, variables=variables,
                            policy=policy, audit_log=audit_log, ledger_wait=ledger_wait)
    except MedLedgerError as exc:
        fail(exc)
    console.print(f"research site {name} on http://127.0.0.1:{port} (vault {vault})")
    serve(s, port)


@app.command("variables")
def variables(
    file: Path | None = typer.Option(None, "--file", help="Variable map TOML (default: the "
                                     "built-in map)."),
    as_toml: bool = typer.Option(False, "--toml", help="Print the built-in map as TOML."),
) -> None:
    """List a variable map's variables and its SHA-256 (what a study's ``variable_map`` term
    fixes)."""
    from rich.table import Table

    from medledger.research.variables import DEFAULT_MAP, DEFAULT_TOML, load_map

    if as_toml:
        print(DEFAULT_TOML, end="")
        return
    try:
        m = load_map(file) if file else DEFAULT_MAP
    except MedLedgerError as exc:
        fail(exc)
    t = Table(title=f"{m.id} {m.version} — sha256 {m.digest()}")
    for col in ("variable", "kind", "reads", "consent categories", "description"):
        t.add_column(col)
    for v in m.variables:
        reads = v.loinc or ", ".join(v.codes or []) or (
            f"band {v.band}" if v.band else "")
        t.add_row(v.name, v.kind + (f" ({v.reduce})" if v.kind == "lab" else ""), reads,
                  ", ".join(sorted(v.needs())), v.description)
    console.print(t)


@app.command("verify")
def verify(
    bundle: Path = typer.Argument(..., help="Audit bundle directory (one folder per query)."),
    study: str = typer.Option(..., "--study", help="Study id on the ledger."),
    site_log: list[str] = typer.Option([], "--site-log", help="SITE=FILE: cross-check that "
                                       "site's own audit log with the ledger (repeatable)."),
    site_url: list[str] = typer.Option([], "--site-url", help="SITE=URL: the same with the log "
                                       "fetched from the site process (GET URL/audit-log; "
                                       "repeatable)."),
    ws_dir: Path = WorkspaceOpt,
) -> None:
    """Recompute every query, response and result hash in BUNDLE and compare with the ledger;
    with --site-log, check each site's log chain and that it and the ledger agree on every
    response of that site; when a contribution is recorded, recompute its revenue split from
    the recorded n and φ under the study's rule. Exit 1 naming each file, line or query that
    differs."""
    if not bundle.is_dir():
        error("not_found", f"no bundle directory {bundle}")
    logs: list[tuple[str, str, bytes]] = []
    for opt, specs in (("--site-log", site_log), ("--site-url", site_url)):
        for spec in specs:
            name, sep, where = spec.partition("=")
            if not sep or not name or not where:
                error("bad_args", f"{opt} {spec!r}: want SITE={opt[7:].upper()}")
            try:
                logs.append((name, where, _site_log_bytes(name, where, opt == "--site-url")))
            except (OSError, MedLedgerError) as exc:
                error("not_found", f"{opt} {spec}: cannot read the log ({exc})")
    store = workspace(ws_dir).store()
    try:
        checked, problems = audit.verify(store, study, bundle)
        for name, where, raw in logs:
            problems += audit.cross_check_log(store, study, name, raw, Path(where).name)
        split = apportion.recheck_ledger(store, study)
        problems += split or []
    finally:
        store.close()
    for p in problems:
        console.print(f"[red]mismatch[/] {p}")
    if problems or not checked:
        error("verify_failed", f"{len(problems)} of {checked} hashes differ" if checked
              else "bundle holds no files", exit_code=1)
    console.print(f"ok: {checked} hashes match the ledger for study {study}"
                  + (f"; {len(logs)} site log(s) agree with it" if logs else "")
                  + ("; the revenue split follows the declared rule" if split is not None
                     else ""))


def _site_log_bytes(name: str, where: str, remote: bool) -> bytes:
    if not remote:
        return Path(where).read_bytes()
    from medledger.research.http import HttpSite

    client = HttpSite(name, where)
    try:
        return client.audit_log()
    finally:
        client.close()


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
