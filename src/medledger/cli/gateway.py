"""``medledger gateway``: the hospital data gateway (issue 4). Thin: parse, call
``medledger.gateway.service`` and friends, render."""

from __future__ import annotations

import json
from contextlib import ExitStack, suppress
from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from medledger.cli.common import console, error
from medledger.errors import MedLedgerError
from medledger.gateway import service
from medledger.gateway.deid import PseudonymKey
from medledger.gateway.vault import Vault

app = typer.Typer(help="Hospital data gateway: ingest exports, map, de-identify, vault, "
                  "anchor, verify, evaluate.", no_args_is_help=True)

VaultOpt = typer.Option(..., "--vault", help="The hospital's vault directory (vault.db).")
VaultKeyOpt = typer.Option(None, "--vault-key", envvar="MEDLEDGER_VAULT_KEY",
                           help="Vault data key file (default: VAULT/vault.key).")
PseudoKeyOpt = typer.Option(..., "--pseudonym-key", envvar="MEDLEDGER_PSEUDONYM_KEY",
                            help="Consortium pseudonym key file (JSON: version, key); kept "
                            "outside the gateway.")
LedgerOpt = typer.Option(None, "--ledger", help="Workspace directory of the embedded node to "
                         "anchor on, or the hospital's cluster peer directory (peer.json: "
                         "anchors go through that peer's HTTP API); omit: batches stay "
                         "pending.")
MemberOpt = typer.Option(None, "--member", help="Signing member (default <site>/gateway, "
                         "else <site>/root).")
JsonOpt = typer.Option(False, "--json", help="Print JSON.")


def _fail(exc: MedLedgerError) -> None:
    error(str(exc.code), exc.message)


def _open_vault(path: Path, key: Path | None) -> Vault:
    try:
        return Vault(path, key)
    except MedLedgerError as exc:
        _fail(exc)
        raise


@app.command("synth")
def synth(
    out: Path = typer.Argument(..., help="Directory to write the hospitals' exports into."),
    seed: int = typer.Option(7, help="Random seed (same seed, same files)."),
    persons: int = typer.Option(300, min=10, help="Distinct persons across the hospitals."),
    rows: int = typer.Option(400, min=20, help="Clean rows per file (defects, duplicates and "
                             "review rows come on top)."),
    unseen_share: float = typer.Option(0.0, min=0.0, max=1.0, help="Share of clean diagnosis "
                                       "rows spelled in a way no curated table holds."),
) -> None:
    """Write three synthetic hospitals' exports, their profiles, truth.csv and linkage.csv."""
    from medledger.gateway.synth import generate

    names = generate(out, seed=seed, persons=persons, rows=rows, unseen=unseen_share)
    for n in names:
        console.print(f"{out / n}  (profile {out / (n + '.toml')})")
    console.print(f"truth: {out / 'truth.csv'}  linkage: {out / 'linkage.csv'}")


@app.command("keygen")
def keygen(
    path: Path = typer.Argument(..., help="Where to write the new pseudonym key (mode 0600)."),
    version: str = typer.Option("k1", help="Key version, carried in every pseudonym."),
) -> None:
    """Create a consortium pseudonym key (development; production keys come from a KMS)."""
    try:
        PseudonymKey.generate(path, version)
    except FileExistsError:
        error("already_exists", f"{path} exists; refusing to overwrite a key")
    except MedLedgerError as exc:
        _fail(exc)
    console.print(f"wrote {path} (version {version})")


def _reasons(doc: dict[str, object]) -> str:
    reasons = doc.get("reasons")
    if not isinstance(reasons, dict):
        return ""
    return ", ".join(f"{k} {v}" for k, v in sorted(reasons.items()))


def _report_table(docs: list[dict[str, object]]) -> Table:
    t = Table(title="Reconciliation: in = emitted + quarantined + duplicates + review",
              caption="; ".join(f"{d['source_name']}: {_reasons(d)}" for d in docs
                                if d.get("reasons")))
    for col in ("file", "status", "in", "emitted", "quar.", "dup.", "review", "ok"):
        t.add_column(col, no_wrap=col == "file")
    for d in docs:
        t.add_row(str(d["source_name"]), str(d["status"]), str(d["rows_in"]),
                  str(d["emitted"]), str(d["quarantined"]), str(d["duplicates"]),
                  str(d["review"]), "yes" if d["balanced"] else "[red]NO[/]")
    return t


@app.command("ingest")
def ingest(
    files: list[Path] = typer.Argument(..., help="Export files (CSV, TSV, xlsx; *.hl7 files "
                                       "are read as HL7 v2; *.toml arguments are skipped)."),
    profile: Path | None = typer.Option(None, "--profile", help="Source profile (TOML); "
                                        "default: FILE.toml beside each file."),
    site: str | None = typer.Option(None, "--site", help="Site of *.hl7 files (default: the "
                                    "profiled files' site)."),
    vault: Path = VaultOpt,
    vault_key: Path | None = VaultKeyOpt,
    pseudonym_key: Path = PseudoKeyOpt,
    ledger: Path | None = LedgerOpt,
    member: str | None = MemberOpt,
    full_validation: bool = typer.Option(False, "--full-validation", help="Validate every "
                                         "resource with the fhir.resources models (slower)."),
    workers: int = typer.Option(0, "--workers", min=0, help="Worker processes parsing and "
                                "preparing CSV/TSV rows (0: all in this process; worth it for "
                                "large files)."),
    as_json: bool = JsonOpt,
) -> None:
    """Map, check, de-identify, vault and anchor FILES; print each file's reconciliation."""
    try:
        key = PseudonymKey.load(pseudonym_key)
        profiled = service.load_profiles(
            [f for f in files if f.suffix not in (".hl7", ".toml")], profile)
        owner = site or (profiled[0][1].profile.site if profiled else None)
        v = _open_vault(vault, vault_key)
        with ExitStack() as stack:
            anchorer = None
            if ledger is not None:
                if owner is None:
                    error("bad_args", "anchoring HL7 v2 files needs --site")
                anchorer = stack.enter_context(service.ledger(ledger, owner, member))
            with Progress(TextColumn("ingest"), BarColumn(), MofNCompleteColumn(),
                          TimeElapsedColumn(), console=console, transient=True,
                          disable=as_json) as bar:
                task = bar.add_task("rows", total=None)
                run_id, reports = service.ingest_export_dir(
                    v, key, files, owner, anchorer, profile=profile,
                    full_validation=full_validation, progress=lambda n: bar.advance(task, n),
                    workers=workers)
    except MedLedgerError as exc:
        _fail(exc)
    docs = [r.to_doc() for r in reports]
    if as_json:
        print(json.dumps({"run_id": run_id, "files": docs}, ensure_ascii=False))
        return
    console.print(f"run {run_id}")
    console.print(_report_table(docs))


def _ingest_messages(fmt: str, files: list[Path], site: str, source_system: str,
                     encoding: str, vault: Path, vault_key: Path | None, pseudonym_key: Path,
                     ledger: Path | None, member: str | None, as_json: bool) -> None:
    try:
        key = PseudonymKey.load(pseudonym_key)
        v = _open_vault(vault, vault_key)
        with ExitStack() as stack:
            anchorer = (stack.enter_context(service.ledger(ledger, site, member))
                        if ledger is not None else None)
            run_id, reports = service.ingest_message_files(
                v, key, files, site, source_system, anchorer, fmt=fmt, encoding=encoding)
    except MedLedgerError as exc:
        _fail(exc)
    docs = [r.to_doc() for r in reports]
    if as_json:
        print(json.dumps({"run_id": run_id, "files": docs}, ensure_ascii=False))
        return
    unit = "segments" if fmt == "hl7" else "resources"
    t = Table(title=f"run {run_id}: {unit} = mapped rows + ignored")
    for col in ("file", unit, "emitted", "quar.", "dup.", "review", "ignored", "ok"):
        t.add_column(col, no_wrap=col == "file")
    for r in reports:
        fs = r.files
        t.add_row(r.source_name, str(r.segments), str(sum(f.emitted for f in fs)),
                  str(sum(f.quarantined for f in fs)), str(sum(f.duplicates for f in fs)),
                  str(sum(f.review for f in fs)), str(sum(r.ignored.values())),
                  "yes" if r.accounted else "[red]NO[/]")
    console.print(t)


SiteOpt = typer.Option(..., "--site", help="The sending organisation (ledger org id).")


@app.command("ingest-hl7")
def ingest_hl7(
    files: list[Path] = typer.Argument(..., help="HL7 v2 message files (one or more messages "
                                       "each; CR, LF or CRLF segment ends; BOM allowed)."),
    site: str = SiteOpt,
    source_system: str = typer.Option("HL7v2", "--source-system", help="Sending system."),
    encoding: str = typer.Option("utf-8", help="Declared encoding; decoded strictly."),
    vault: Path = VaultOpt,
    vault_key: Path | None = VaultKeyOpt,
    pseudonym_key: Path = PseudoKeyOpt,
    ledger: Path | None = LedgerOpt,
    member: str | None = MemberOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Map ADT (DG1), ORU/OUL (numeric OBX), RDE (RXE) and RDS (RXD); list every other segment
    as ignored with its reason."""
    _ingest_messages("hl7", files, site, source_system, encoding, vault, vault_key,
                     pseudonym_key, ledger, member, as_json)


@app.command("ingest-fhir")
def ingest_fhir(
    files: list[Path] = typer.Argument(..., help="FHIR R4 Bundle (.json) or NDJSON files."),
    site: str = SiteOpt,
    source_system: str = typer.Option("FHIR", "--source-system", help="Sending system."),
    vault: Path = VaultOpt,
    vault_key: Path | None = VaultKeyOpt,
    pseudonym_key: Path = PseudoKeyOpt,
    ledger: Path | None = LedgerOpt,
    member: str | None = MemberOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Map Condition, Observation (valueQuantity), MedicationRequest and MedicationDispense;
    Patients give the identity; every other resource is listed as ignored."""
    _ingest_messages("fhir", files, site, source_system, "utf-8", vault, vault_key,
                     pseudonym_key, ledger, member, as_json)


@app.command("report")
def report(vault: Path = VaultOpt, vault_key: Path | None = VaultKeyOpt,
           as_json: bool = JsonOpt) -> None:
    """Every ingested file's reconciliation."""
    from medledger.gateway.pipeline import iter_reports

    docs = list(iter_reports(_open_vault(vault, vault_key)))
    if as_json:
        print(json.dumps(docs, ensure_ascii=False))
    else:
        console.print(_report_table(docs))


@app.command("quarantine")
def quarantine(vault: Path = VaultOpt, vault_key: Path | None = VaultKeyOpt,
               reason: str | None = typer.Option(None, help="Only this reason code."),
               limit: int = typer.Option(50, min=1), as_json: bool = JsonOpt) -> None:
    """Quarantined rows: file, position, reason, detail (the verbatim rows stay sealed)."""
    v = _open_vault(vault, vault_key)
    sql = "SELECT source_name, position, reason, detail FROM quarantine"
    rows = v.rows(sql + (" WHERE reason=?" if reason else "") + " ORDER BY id LIMIT ?",
                  (reason, limit) if reason else (limit,))
    docs = [dict(r) for r in rows]
    if as_json:
        print(json.dumps(docs, ensure_ascii=False))
        return
    t = Table(title="Quarantine")
    for col in ("file", "position", "reason", "detail"):
        t.add_column(col)
    for d in docs:
        t.add_row(d["source_name"], d["position"], d["reason"], d["detail"])
    console.print(t)


@app.command("verify")
def verify(vault: Path = VaultOpt, vault_key: Path | None = VaultKeyOpt,
           ledger: Path | None = LedgerOpt, member: str | None = MemberOpt,
           site: str | None = typer.Option(None, help="Organisation whose anchors to read "
                                           "(default: from the vault's profiles)."),
           fhir: bool = typer.Option(False, "--fhir", help="Also validate every resource with "
                                     "the fhir.resources R4B models."),
           as_json: bool = JsonOpt) -> None:
    """Recompute every record and batch root; with --ledger, match the anchored roots.
    Exit 1 on any finding."""
    from medledger.gateway.verify import verify as run_verify

    v = _open_vault(vault, vault_key)
    try:
        if ledger is not None:
            org = site or _vault_site(v)
            with service.ledger(ledger, org, member) as anchorer:
                rep = run_verify(v, anchorer, fhir)
        else:
            rep = run_verify(v, fhir=fhir)
    except MedLedgerError as exc:
        _fail(exc)
    if as_json:
        print(json.dumps(rep.to_doc()))
    else:
        valid = f", {rep.fhir_valid} valid R4B" if fhir else ""
        console.print(f"records {rep.records}{valid}, batches {rep.batches} (anchored "
                      f"{rep.anchored}, pending {rep.pending}): " +
                      ("[green]OK[/]" if rep.ok else "[red]FAILED[/]"))
        for f in rep.findings[:20]:
            console.print(f"  {f}")
    if not rep.ok:
        raise typer.Exit(1)


def _vault_site(v: Vault) -> str:
    rows = v.rows("SELECT body FROM profiles LIMIT 1")
    if not rows:
        error("not_found", "the vault has no ingested profile; pass --site")
    site: str = json.loads(rows[0]["body"])["profile"]["site"]
    return site


@app.command("anchor")
def anchor(vault: Path = VaultOpt, vault_key: Path | None = VaultKeyOpt,
           ledger: Path = typer.Option(..., "--ledger", help="Workspace of the embedded node, "
                                       "or the hospital's cluster peer directory."),
           member: str | None = MemberOpt) -> None:
    """Anchor batches still pending (from runs without a ledger)."""
    from medledger.gateway.verify import anchor_pending

    v = _open_vault(vault, vault_key)
    try:
        with service.ledger(ledger, _vault_site(v), member) as anchorer:
            done = anchor_pending(v, anchorer)
    except MedLedgerError as exc:
        _fail(exc)
    console.print(f"anchored {len(done)} batch(es): {', '.join(done) or '-'}")


@app.command("proof")
def proof(record_id: str = typer.Argument(..., help="Record id in the vault."),
          vault: Path = VaultOpt, vault_key: Path | None = VaultKeyOpt) -> None:
    """A record's Merkle inclusion proof into its batch root (JSON)."""
    from medledger.gateway.verify import prove

    try:
        doc = prove(_open_vault(vault, vault_key), record_id)
    except MedLedgerError as exc:
        _fail(exc)
    print(json.dumps(doc))


@app.command("evaluate")
def evaluate(
    truth: Path = typer.Option(..., "--truth", help="Truth CSV (issue 4 columns)."),
    vaults: list[Path] = typer.Option(..., "--vault", help="Vault(s) to score; repeat per "
                                      "hospital."),
    linkage: Path | None = typer.Option(None, "--linkage", help="source_file,row,person CSV "
                                        "for linkage recall and false merges."),
    as_json: bool = JsonOpt,
) -> None:
    """Score the vaults' outcomes against TRUTH: accuracy by category and language."""
    from medledger.gateway.evaluate import evaluate as run_eval

    opened = [_open_vault(v, None) for v in vaults]
    try:
        ev = run_eval(opened, truth, linkage)
    except MedLedgerError as exc:
        _fail(exc)
    doc = ev.to_doc()
    if as_json:
        print(json.dumps(doc, ensure_ascii=False))
        return
    t = Table(title="Evaluation")
    for col in ("category", "language", "right", "total", "accuracy"):
        t.add_column(col)
    for k, s in doc["categories"].items():
        t.add_row(k, "all", str(s["right"]), str(s["total"]), f"{s['rate']:.2%}")
    for k, s in doc["by_language"].items():
        cat, lang = k.split("/")
        t.add_row(cat, lang, str(s["right"]), str(s["total"]), f"{s['rate']:.2%}")
    console.print(t)
    if doc["files_not_ingested"]:
        console.print(f"not in these vaults (left out): {', '.join(doc['files_not_ingested'])}")
    console.print(f"auto-accepted mappings: {doc['mapped']}, wrong {doc['wrong_auto_accepted']} "
                  f"({doc['wrong_auto_accepted_rate']:.3%}); defects emitted as valid: "
                  f"{doc['defects_emitted']}; rows without outcome: "
                  f"{doc['rows_without_outcome']}")
    if doc["linkage"]:
        lk = doc["linkage"]
        console.print(f"linkage: recall {lk['recall']:.2%} ({lk['linked']}/{lk['pairs']} pairs "
                      f"of {lk['persons']} persons), false merges {lk['false_merges']}")
    for e in doc["first_errors"][:10]:
        console.print(f"  wrong: {e}")


profile_app = typer.Typer(help="Source profiles.", no_args_is_help=True)
app.add_typer(profile_app, name="profile")
review_app = typer.Typer(help="The review queue: terms that were not exact or curated hits.",
                         no_args_is_help=True)
app.add_typer(review_app, name="review")


@profile_app.command("suggest")
def profile_suggest(
    sample: Path = typer.Argument(..., help="A sample export (CSV/TSV) from the new source."),
    encoding: str = typer.Option("utf-8", help="The file's declared encoding."),
    delimiter: str | None = typer.Option(None, help="Field separator (default: detected from "
                                         "the header line among , TAB ; |)."),
    site: str = typer.Option("new-site", help="Organisation id for the draft."),
    out: Path | None = typer.Option(None, "--out", help="Write the draft profile here."),
    as_json: bool = JsonOpt,
) -> None:
    """Draft a profile: column → data element with scores and value profiles, and term
    mappings; terms below an exact or curated hit are listed for review, never accepted."""
    from medledger.gateway.suggest import suggest

    try:
        s = suggest(sample, encoding, delimiter, site)
    except MedLedgerError as exc:
        _fail(exc)
    if out is not None:
        out.write_text(s.draft, encoding="utf-8")
    if as_json:
        print(json.dumps({"kind": s.kind, "rows_scanned": s.rows, "columns": [
            c.__dict__ for c in s.columns], "terms": s.terms, "draft": s.draft},
            ensure_ascii=False))
        return
    t = Table(title=f"{sample.name}: {s.rows} rows scanned, looks like a {s.kind} export")
    for col in ("column", "element", "score", "why", "filled", "top values (<5 suppressed)"):
        t.add_column(col)
    for c in s.columns:
        t.add_row(c.header, c.element or "-", f"{c.score:.2f}", c.why, f"{c.filled:.0%}",
                  ", ".join(f"{v} ({n})" for v, n in c.top[:3]))
    console.print(t)
    accepted = sum(1 for x in s.terms if x["accepted"])
    console.print(f"terms: {accepted} accepted (exact or curated), "
                  f"{len(s.terms) - accepted} need review")
    console.print(s.draft if out is None else f"draft written to {out}")


@review_app.command("list")
def review_list(vault: Path = VaultOpt, vault_key: Path | None = VaultKeyOpt,
                status: str = typer.Option("open", help="open, decided, no_equivalent, applied "
                                           "or all."),
                limit: int = typer.Option(50, min=1), as_json: bool = JsonOpt) -> None:
    """Items waiting for a data steward, with their candidates and scores."""
    from medledger.gateway import review

    got = review.items(_open_vault(vault, vault_key), None if status == "all" else status, limit)
    if as_json:
        print(json.dumps([i.to_doc() for i in got], ensure_ascii=False))
        return
    t = Table(title=f"Review queue ({status})")
    for col in ("id", "file", "row", "kind", "term", "reason", "candidates (score)"):
        t.add_column(col)
    for i in got:
        t.add_row(str(i.id), i.source_name, i.position, i.kind, i.term, i.reason,
                  ", ".join(f"{c['target']} {c['score']:.2f}" for c in i.candidates[:5]))
    console.print(t)


@review_app.command("decide")
def review_decide(
    item: int = typer.Argument(..., help="Review item id."),
    code: str | None = typer.Option(None, "--code", help="WHO ICD-10 code (diagnoses) or "
                                    "analyte key (labs)."),
    no_equivalent: bool = typer.Option(False, "--no-equivalent", help="The term has no "
                                       "standard equivalent (e.g. TCM): never coded."),
    reviewer: str = typer.Option(..., "--reviewer", help="Who decides (recorded)."),
    vault: Path = VaultOpt, vault_key: Path | None = VaultKeyOpt,
) -> None:
    """Record a decision for the item's term; it applies to every item with that term and is
    reused by later runs."""
    from medledger.gateway import review

    if (code is None) == (not no_equivalent):
        error("bad_args", "give exactly one of --code or --no-equivalent")
    try:
        n = review.decide(_open_vault(vault, vault_key), item,
                          review.NO_EQUIVALENT if no_equivalent else str(code), reviewer)
    except MedLedgerError as exc:
        _fail(exc)
    console.print(f"decided {n} item(s)")


@review_app.command("apply")
def review_apply(vault: Path = VaultOpt, vault_key: Path | None = VaultKeyOpt,
                 pseudonym_key: Path = PseudoKeyOpt, ledger: Path | None = LedgerOpt,
                 member: str | None = MemberOpt) -> None:
    """Emit every decided row (new records, anchored with --ledger)."""
    from medledger.gateway import review

    try:
        key = PseudonymKey.load(pseudonym_key)
        v = _open_vault(vault, vault_key)
        with ExitStack() as stack:
            anchorer = (stack.enter_context(service.ledger(ledger, _vault_site(v), member))
                        if ledger is not None else None)
            counts = review.apply(v, key, anchorer)
    except MedLedgerError as exc:
        _fail(exc)
    console.print(f"applied {counts['applied']}, quarantined {counts['quarantined']}")


@app.command("serve")
def serve(
    vault: Path = VaultOpt,
    vault_key: Path | None = VaultKeyOpt,
    pseudonym_key: Path = PseudoKeyOpt,
    profiles: Path = typer.Option(..., "--profiles", help="Directory of profile files (*.toml); "
                                  "uploads name one by its id."),
    token_file: Path = typer.Option(..., "--token-file", help="File holding the bearer token "
                                    "clients must send."),
    ledger: Path | None = LedgerOpt,
    member: str | None = MemberOpt,
    host: str = typer.Option("127.0.0.1", help="Bind address."),
    port: int = typer.Option(8410, help="Port."),
) -> None:
    """Serve the gateway's local HTTP API (runs, quarantine, review) until interrupted."""
    import uvicorn

    from medledger.gateway.api import GatewayState, create_gateway_app
    from medledger.gateway.profile import load_profile

    try:
        key = PseudonymKey.load(pseudonym_key)
        loaded = {p.profile.id: p for p in (load_profile(f)
                                             for f in sorted(profiles.glob("*.toml")))}
        from medledger.gateway.deid import check_private

        check_private(token_file)
        token = token_file.read_text().strip()
        if len(token) < 16:
            error("bad_args", f"{token_file}: the token must be at least 16 characters")
        v = _open_vault(vault, vault_key)
        with ExitStack() as stack:
            anchorer = None
            if ledger is not None and loaded:
                site = next(iter(loaded.values())).profile.site
                anchorer = stack.enter_context(service.ledger(ledger, site, member))
            state = GatewayState(v, key, loaded, token, anchorer)
            console.print(f"gateway API on http://{host}:{port} — profiles: "
                          f"{', '.join(sorted(loaded)) or 'none'}")
            uvicorn.run(create_gateway_app(state), host=host, port=port, log_level="warning")
    except (MedLedgerError, OSError) as exc:
        if isinstance(exc, MedLedgerError):
            _fail(exc)
        error("not_found", str(exc))


@app.command("mllp")
def mllp(
    site: str = SiteOpt,
    vault: Path = VaultOpt,
    vault_key: Path | None = VaultKeyOpt,
    pseudonym_key: Path = PseudoKeyOpt,
    ledger: Path | None = LedgerOpt,
    member: str | None = MemberOpt,
    source_system: str = typer.Option("MLLP", "--source-system", help="Sending system."),
    encoding: str = typer.Option("utf-8", help="Declared encoding of the messages."),
    host: str = typer.Option("127.0.0.1", help="Bind address."),
    port: int = typer.Option(2575, help="Port (2575 is the registered HL7 port)."),
    anchor_every: float = typer.Option(5.0, help="Anchor pending records every N seconds."),
) -> None:
    """Listen for HL7 v2 over MLLP; ingest and ACK every message until interrupted."""
    import asyncio

    from medledger.gateway.deid import Pseudonymizer
    from medledger.gateway.mllp import MllpListener
    from medledger.gateway.pipeline import Gateway

    try:
        key = PseudonymKey.load(pseudonym_key)
        v = _open_vault(vault, vault_key)
        with ExitStack() as stack:
            anchorer = (stack.enter_context(service.ledger(ledger, site, member))
                        if ledger is not None else None)
            lis = MllpListener(Gateway(v, Pseudonymizer(key), anchorer), site, source_system,
                               encoding, anchor_every)
            console.print(f"MLLP listener for {site} on {host}:{port}")
            with suppress(KeyboardInterrupt):
                asyncio.run(lis.serve(host, port))
            console.print(f"received {lis.received}, accepted {lis.accepted}, "
                          f"rejected {lis.rejected}")
    except MedLedgerError as exc:
        _fail(exc)


@app.command("kanon")
def kanon(vault: Path = VaultOpt, vault_key: Path | None = VaultKeyOpt,
          qi: str = typer.Option("birth_year,gender", help="Quasi-identifiers, comma-separated "
                                 "(birth_year, age, gender, code, date)."),
          k: int = typer.Option(5, min=2, help="Required patients per equivalence class."),
          max_suppression: float = typer.Option(0.05, min=0.0, max=1.0,
                                                help="Largest share of rows to suppress."),
          out: Path | None = typer.Option(None, "--out", help="Write the k-anonymous research "
                                          "extract here (CSV)."),
          as_json: bool = JsonOpt) -> None:
    """k-anonymous research extract: the least generalisation of the quasi-identifiers (age
    bands, ICD-10 categories and chapters, months and years…) that reaches k with at most the
    given suppression; --out writes it. Exit 1 if none does."""
    from medledger.gateway.kanon import report as k_report

    try:
        doc = k_report(_open_vault(vault, vault_key), tuple(q.strip() for q in qi.split(",")),
                       k, max_suppression, out)
    except MedLedgerError as exc:
        _fail(exc)
    if as_json:
        print(json.dumps(doc))
    else:
        qis = ", ".join(doc["quasi_identifiers"])
        t = Table(title=f"k-anonymity (k={k}) of {doc['rows']:,} rows, {doc['patients']:,} "
                        f"patients, on {qis}")
        for col in ("quasi-identifier", "generalised to"):
            t.add_column(col)
        chosen = doc["chosen"]
        for q in doc["quasi_identifiers"]:
            t.add_row(q, chosen["generalisation"][q] if chosen else "-")
        console.print(t)
        if chosen:
            console.print(f"{chosen['classes']:,} classes, smallest {chosen['smallest']} "
                          f"patients, {chosen['suppressed']:,} rows suppressed "
                          f"({len(doc['levels'])} generalisations tried)")
            if doc["out"]:
                console.print(f"wrote {doc['written']:,} rows to {doc['out']}")
        else:
            console.print(f"[red]no generalisation reaches k={k} within "
                          f"{max_suppression:.0%} suppression[/]")
    if not doc["k_anonymous_after_suppression"]:
        raise typer.Exit(1)


@app.command("export")
def export(out: Path = typer.Argument(..., help="NDJSON file to write."),
           vault: Path = VaultOpt, vault_key: Path | None = VaultKeyOpt,
           resource_type: str | None = typer.Option(None, "--type", help="Only this FHIR "
                                                    "resource type."),
           ) -> None:
    """Write the vault's shareable view (current de-identified resources with their record id,
    version, fingerprint and batch), scanned for identifiers line by line."""
    from medledger.gateway.share import export as run_export

    try:
        n = run_export(_open_vault(vault, vault_key), out, resource_type)
    except MedLedgerError as exc:
        _fail(exc)
    console.print(f"wrote {n:,} resources to {out}")


@app.command("ignored")
def ignored(vault: Path = VaultOpt, vault_key: Path | None = VaultKeyOpt,
            source: str | None = typer.Option(None, "--file", help="Only this source file "
                                              "(site/name)."),
            limit: int = typer.Option(50, min=1), as_json: bool = JsonOpt) -> None:
    """HL7 v2 segments and FHIR resources listed as ignored, with their reasons."""
    v = _open_vault(vault, vault_key)
    where, params = (" WHERE source_name=?", (source,)) if source else ("", ())
    counts = v.rows("SELECT reason, count(*) FROM ignored" + where + " GROUP BY reason "
                    "ORDER BY 2 DESC", params)
    rows = v.rows("SELECT source_name, position, segment, reason FROM ignored" + where +
                  " ORDER BY rowid LIMIT ?", (*params, limit))
    if as_json:
        print(json.dumps({"by_reason": {r[0]: r[1] for r in counts},
                          "items": [dict(r) for r in rows]}))
        return
    t = Table(title="Ignored, by reason")
    t.add_column("reason")
    t.add_column("count")
    for reason, n in counts:
        t.add_row(reason, str(n))
    console.print(t)
    t = Table(title=f"First {limit}")
    for col in ("file", "position", "segment/resource", "reason"):
        t.add_column(col)
    for r in rows:
        t.add_row(r[0], r[1], r[2] or "", r[3])
    console.print(t)
