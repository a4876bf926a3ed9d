"""``medledger surveillance detect``: run one aberration-detection method on a week series CSV.

Options carry R ``surveillance``'s control names (``--b``, ``--noPeriods``, ...), so a run can be
compared with R one to one; see docs/surveillance.md.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Any

import typer

from medledger.cli.common import WorkspaceOpt, console, error, fail, workspace
from medledger.errors import MedLedgerError
from medledger.surveillance import MpmThresholds, SurveillanceError, WeekRange, detect
from medledger.surveillance import read_csv as read_series
from medledger.surveillance import write_csv as write_result

app = typer.Typer(help="Aberration detection on weekly case counts.", no_args_is_help=True)

class Method(StrEnum):
    EARS_C1 = "ears-c1"
    EARS_C2 = "ears-c2"
    EARS_C3 = "ears-c3"
    FARRINGTON = "farrington"
    FARRINGTON_FLEXIBLE = "farrington-flexible"
    CUSUM = "cusum"
    MPM = "mpm"


def _limit54(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    parts = text.split(",")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise SurveillanceError(f"limit54 must be CASES,WEEKS; got {text!r}")
    return int(parts[0]), int(parts[1])


def _m(text: str | None) -> float | str | None:
    if text is None or text == "glm":
        return text
    try:
        return float(text)
    except ValueError:
        raise SurveillanceError(f"m must be a number or 'glm'; got {text!r}") from None


@app.command("detect")
def detect_cmd(
    method: Method = typer.Option(..., "--method", help="Detection method."),
    input_path: Path = typer.Option(..., "--input", help="Series CSV: week_index,date,observed."),
    week_range: str = typer.Option(..., "--range", help="Weeks to test, FIRST:LAST (1-based)."),
    output: Path = typer.Option(..., "--output", help="Result CSV: week_index,observed,"
                                "upperbound,alarm."),
    r_compatible: bool = typer.Option(False, "--r-compatible", help="Reproduce R surveillance "
                                      "1.20.3 where the product differs (C3, flexible, cusum)."),
    alpha: float | None = typer.Option(None, "--alpha", help="Significance level (R alpha)."),
    baseline: int | None = typer.Option(None, "--baseline", help="EARS baseline weeks."),
    min_sigma: float | None = typer.Option(None, "--minSigma", help="EARS minimum sigma."),
    b: int | None = typer.Option(None, "--b", help="Years back (Farrington, MPM)."),
    w: int | None = typer.Option(None, "--w", help="Half-window in weeks (Farrington, MPM)."),
    reweight: bool | None = typer.Option(None, "--reweight/--no-reweight",
                                         help="Down-weight past outbreaks (Farrington)."),
    trend: bool | None = typer.Option(None, "--trend/--no-trend",
                                      help="Allow a time trend (Farrington)."),
    limit54: str | None = typer.Option(None, "--limit54", help="CASES,WEEKS low-count rule."),
    powertrans: str | None = typer.Option(None, "--powertrans", help="2/3, 1/2 or none."),
    weights_threshold: float | None = typer.Option(None, "--weightsThreshold",
                                                   help="Reweighting threshold (flexible)."),
    p_threshold_trend: float | None = typer.Option(None, "--pThresholdTrend",
                                                   help="Trend p-value threshold (flexible)."),
    no_periods: int | None = typer.Option(None, "--noPeriods",
                                          help="Seasonal factor levels (flexible)."),
    past_weeks: int | None = typer.Option(None, "--pastWeeksNotIncluded",
                                          help="Recent weeks left out (flexible)."),
    threshold_method: str | None = typer.Option(None, "--thresholdMethod",
                                                help="delta, nbPlugin or muan (flexible)."),
    k: float | None = typer.Option(None, "--k", help="CUSUM reference value."),
    h: float | None = typer.Option(None, "--h", help="CUSUM decision threshold."),
    m: str | None = typer.Option(None, "--m", help="CUSUM expected count: number or glm."),
    trans: str | None = typer.Option(None, "--trans", help="CUSUM standardisation."),
    reset: bool | None = typer.Option(None, "--reset/--no-reset",
                                      help="CUSUM restarts at 0 after an alarm."),
    percentile: float | None = typer.Option(None, "--percentile", help="MPM percentile."),
    thresholds: Path | None = typer.Option(None, "--thresholds",
                                           help="MPM CSV: disease,region,percentile."),
    disease: str | None = typer.Option(None, "--disease", help="Disease, for --thresholds."),
    region: str | None = typer.Option(None, "--region", help="Region, for --thresholds."),
) -> None:
    """Run one detection method on weeks FIRST:LAST of a series and write the result CSV."""
    try:
        given: dict[str, Any] = {
            "alpha": alpha, "baseline": baseline, "minSigma": min_sigma, "b": b, "w": w,
            "reweight": reweight, "trend": trend, "limit54": _limit54(limit54),
            "powertrans": powertrans, "weightsThreshold": weights_threshold,
            "pThresholdTrend": p_threshold_trend, "noPeriods": no_periods,
            "pastWeeksNotIncluded": past_weeks, "thresholdMethod": threshold_method,
            "k": k, "h": h, "m": _m(m), "trans": trans, "reset": reset,
            "percentile": percentile, "disease": disease, "region": region,
            "thresholds": (MpmThresholds.read_csv(thresholds, percentile or 80.0)
                           if thresholds else None),
        }
        options = {key: value for key, value in given.items() if value is not None}
        if r_compatible:
            options["r_compatible"] = True
        result = detect(method.value, read_series(input_path), WeekRange.parse(week_range),
                        options)
    except SurveillanceError as exc:
        fail(exc)
    except OSError as exc:
        fail(SurveillanceError(f"cannot read {exc.filename}: {exc.strerror}"))
    write_result(result, output)


# ---------------------------------------------------------------- case reports and signals
# (thin: parse, call medledger.surveillance.views / monitor / drafting, render)


@app.command("counts")
def counts_cmd(
    disease: str = typer.Option(..., "--disease", help="Catalog disease id, e.g. shigellosis."),
    start: str = typer.Option(..., "--from", help="First day (YYYY-MM-DD) or week (YYYY-Www)."),
    end: str = typer.Option(..., "--to", help="Last day or week, inclusive."),
    by: str = typer.Option("week", "--by", help="week or day."),
    district: list[str] = typer.Option([], "--district", help="District (repeat; default all)."),
    directory: Path = WorkspaceOpt,
) -> None:
    """Zero-filled case counts on the ledger, by ISO week or day."""
    from medledger.surveillance import views
    from medledger.surveillance.calendar import iso_week, parse_date

    store = workspace(directory).store()
    ds = district or views.districts(store, disease)
    try:
        if by == "week":
            def wk(t: str) -> str:
                return t if "W" in t else iso_week(parse_date(t))
            buckets, values = views.weekly(store, disease, ds, wk(start), wk(end))
        elif by == "day":
            buckets, values = views.daily(store, disease, ds, parse_date(start), parse_date(end))
        else:
            raise ValueError(f"--by is {by!r}; want week or day")
    except ValueError as exc:
        error("bad_args", str(exc))
    console.print(f"{disease} in {', '.join(ds) or '(no district)'}")
    for bucket, value in zip(buckets, values, strict=True):
        console.print(f"{bucket}  {value:5d}  {'█' * min(value, 60)}")


@app.command("monitor")
def monitor_cmd(
    week: str = typer.Option(..., "--week", help="ISO week to test, YYYY-Www."),
    member: str | None = typer.Option(None, "--as", help="Record the signals on the ledger as "
                                      "this CDC member (e.g. cdc/monitor); default: only print."),
    history: int = typer.Option(313, min=20, help="Weeks of history per series."),
    directory: Path = WorkspaceOpt,
) -> None:
    """Run detection on every disease and stratum for WEEK; print (and record) the signals."""
    from medledger.surveillance import monitor
    from medledger.surveillance.calendar import parse_week

    try:
        parse_week(week)
    except ValueError as exc:
        error("bad_args", str(exc))
    ws = workspace(directory)
    store = ws.store()
    head = store.head()
    run = monitor.run(store, week, head.height if head else 0,
                      monitor.MonitorConfig(history=history))
    console.print(f"{run.series_tested} series with cases tested in {run.seconds:.2f} s; "
                  f"{len(run.signals)} signal(s)")
    for s in run.signals:
        console.print(f"[bold]{s['grade']:6}[/] {s['disease']} {s['stratum'] or 'all'} "
                      f"{s['method']}: {s['counts'][-1]} > {s['threshold']}")
    if member is None:
        return
    store.close()
    ring = ws.keyring()
    if member not in ring.signing:
        error("unknown_signer", f"no key for {member} in the keyring")
    from medledger.client.client import Client

    with ws.node() as node:
        client = Client(node, node.chain_id, member, ring.signing[member])
        for s in run.signals:
            r = client.call("signals", "raise_signal", s)
            console.print(f"recorded {r.value['signal'] if r.ok else r.code}")


@app.command("signals")
def signals_cmd(
    status: str | None = typer.Option(None, "--status", help="open, confirmed, dismissed, "
                                      "closed."),
    directory: Path = WorkspaceOpt,
) -> None:
    """Signals recorded on the ledger, newest week first."""
    from medledger.surveillance import views

    for s in views.signals(workspace(directory).store(), status):
        console.print(f"{s['id']} {s['week']} [bold]{s['grade']}[/] {s['status']:9} "
                      f"{s['disease']} {s['stratum'] or 'all'} {s['method']} "
                      f"observed {s['observed']} > {s['threshold']}")


VaultOpt = typer.Option(None, "--vault", help="The hospital's gateway vault directory.")
VaultKeyOpt = typer.Option(None, "--vault-key", envvar="MEDLEDGER_VAULT_KEY",
                           help="Vault data key file (default: VAULT/vault.key).")
PseudoKeyOpt = typer.Option(None, "--pseudonym-key", envvar="MEDLEDGER_PSEUDONYM_KEY",
                            help="Consortium pseudonym key file (the gateway's).")


@app.command("draft")
def draft_cmd(
    rules: Path = typer.Option(..., "--rules", help="Rules JSON: {lab: [...], diagnosis: "
                               "[...], districts: [[address fragment, district], ...]}."),
    input_path: Path | None = typer.Option(None, "--input", help="FHIR R4 Bundle or list of "
                                           "resources (JSON)."),
    run_id: str | None = typer.Option(None, "--from-gateway-run", help="Draft from this "
                                      "gateway run instead: FILES are its source files, read "
                                      "again inside the hospital; drafts are kept sealed in "
                                      "--vault."),
    files: list[Path] = typer.Argument(None, help="--from-gateway-run: the run's source "
                                       "files (*.toml arguments are skipped)."),
    vault: Path | None = VaultOpt,
    vault_key: Path | None = VaultKeyOpt,
    pseudonym_key: Path | None = PseudoKeyOpt,
    since: str | None = typer.Option(None, "--since", help="--from-gateway-run: leave out "
                                     "rows dated before this day (YYYY-MM-DD)."),
    record_as: str | None = typer.Option(None, "--record-as", help="--from-gateway-run: "
                                         "record each new draft's salted digest on the ledger "
                                         "as this member (e.g. hosp-a/gateway)."),
    directory: Path = WorkspaceOpt,
) -> None:
    """Draft case reports (nothing is submitted) from FHIR resources (--input; printed) or
    from a gateway run (--from-gateway-run; stored in the vault, summary printed)."""
    import json

    from medledger.surveillance.drafting import DraftContext, draft_reports
    from medledger.surveillance.fromgateway import GatewayRules

    if (input_path is None) == (run_id is None):
        error("bad_args", "give --input BUNDLE or --from-gateway-run RUN FILES…")
    try:
        rule_doc = GatewayRules.from_doc(json.loads(rules.read_text()))
        doc = json.loads(input_path.read_text()) if input_path is not None else None
    except (OSError, ValueError) as exc:
        error("bad_args", str(exc))
    if run_id is not None:
        _draft_from_run(rule_doc, run_id, files or [], vault, vault_key, pseudonym_key, since,
                        record_as, directory)
        return
    resources = doc.get("entry", []) if isinstance(doc, dict) else doc
    ctx = (DraftContext(district_of=rule_doc.districts.district_of)
           if rule_doc.districts.entries else DraftContext())
    drafts, skipped = draft_reports(resources or [], rule_doc.rules, ctx)
    console.print_json(json.dumps({
        "drafts": [{"rules": d.rules, "disease": d.disease, "fields": d.fields.to_args(),
                    "patient": d.patient_ref, "sources": d.sources} for d in drafts],
        "skipped": [{"resource": s.resource, "code": s.code, "message": s.message}
                    for s in skipped]}))


def _vault_and_key(vault: Path | None, vault_key: Path | None, pseudonym_key: Path | None
                   ) -> tuple[Any, Any]:
    from medledger.gateway.deid import PseudonymKey
    from medledger.gateway.vault import Vault

    if vault is None or pseudonym_key is None:
        error("bad_args", "needs --vault and --pseudonym-key (the gateway's)")
    try:
        return Vault(vault, vault_key), PseudonymKey.load(pseudonym_key)
    except MedLedgerError as exc:
        fail(exc)


def _draft_from_run(rules: Any, run_id: str, files: list[Path], vault: Path | None,
                    vault_key: Path | None, pseudonym_key: Path | None, since: str | None,
                    record_as: str | None, directory: Path) -> None:
    import json
    from datetime import date

    from medledger.surveillance.fromgateway import DraftStore, draft_run, record_args

    v, key = _vault_and_key(vault, vault_key, pseudonym_key)
    try:
        day = date.fromisoformat(since) if since is not None else None
        got = draft_run(v, key, run_id, [f for f in files if f.suffix != ".toml"], rules,
                        since=day)
    except ValueError as exc:
        error("bad_args", str(exc))
    except MedLedgerError as exc:
        fail(exc)
    doc = got.to_doc()
    if record_as is not None and got.new:
        store = DraftStore(v)
        with _ledger(directory, record_as) as (client, _):
            for d in got.new:
                r = client.call("case_reports", "draft", record_args(d))
                if r.ok:
                    store.recorded(d.id, r.tx_id.hex())
                doc.setdefault("recorded", {})[d.id] = r.code
    console.print_json(json.dumps(doc, ensure_ascii=False))


@contextmanager
def _ledger(directory: Path, member: str) -> Iterator[tuple[Any, Any]]:
    """(client signing as ``member``, node) on the workspace's embedded node."""
    from medledger.client.client import Client

    ws = workspace(directory)
    ring = ws.keyring()
    if member not in ring.signing:
        error("unknown_signer", f"no key for {member} in the keyring")
    with ws.node() as node:
        yield Client(node, node.chain_id, member, ring.signing[member]), node


@app.command("drafts")
def drafts_cmd(
    vault: Path = typer.Option(..., "--vault", help="The hospital's gateway vault directory."),
    vault_key: Path | None = VaultKeyOpt,
    status: str | None = typer.Option(None, "--status", help="open, confirmed or discarded."),
    show: str | None = typer.Option(None, "--show", help="Print this draft in full, with the "
                                    "patient's identified details (for the physician)."),
) -> None:
    """Case-report drafts kept in the hospital's vault (pseudonymous list; --show one)."""
    import json

    from medledger.gateway.vault import Vault
    from medledger.surveillance.fromgateway import DraftStore

    try:
        store = DraftStore(Vault(vault, vault_key))
        if show is not None:
            d = store.get(show)
            if d is None:
                error("not_found", f"no draft {show} in {vault}")
            console.print_json(json.dumps({**d.summary(), "patient_details":
                                           d.draft.patient_details}, ensure_ascii=False))
            return
        drafts = store.all(status)
    except MedLedgerError as exc:
        fail(exc)
    for d in drafts:
        f = d.draft.fields
        console.print(f"{d.id} {d.status:9} {d.draft.disease} {f.diagnosis_date} "
                      f"{f.district} {f.age_band} {f.sex} {f.lab_status} "
                      f"({len(d.records)} record(s))")


@app.command("confirm")
def confirm_cmd(
    draft_id: str = typer.Argument(..., help="The draft (gw-…)."),
    physician: str = typer.Option(..., "--as", help="The confirming physician (member id, "
                                  "e.g. hosp-a/dr-li; the key comes from the keyring)."),
    vault: Path | None = VaultOpt,
    vault_key: Path | None = VaultKeyOpt,
    pseudonym_key: Path | None = PseudoKeyOpt,
    relay: str | None = typer.Option(None, "--relay", help="The member that submits (default "
                                     "<org>/gateway)."),
    cdc: str | None = typer.Option(None, "--cdc", help="The CDC to report to (default: the "
                                   "consortium's only CDC)."),
    onset: str | None = typer.Option(None, "--onset", help="Onset date the physician adds "
                                     "(YYYY-MM-DD)."),
    directory: Path = WorkspaceOpt,
) -> None:
    """Confirm a draft: seal the patient's details and the physician's signature to the CDC
    and submit the report."""
    import orjson

    from medledger.crypto.keys import unb64
    from medledger.surveillance.casefile import ReportError
    from medledger.surveillance.fromgateway import DraftStore, submit_args

    v, key = _vault_and_key(vault, vault_key, pseudonym_key)
    store = DraftStore(v)
    try:
        draft = store.get(draft_id)
    except MedLedgerError as exc:
        fail(exc)
    if draft is None:
        error("not_found", f"no draft {draft_id} in {vault}")
    ws = workspace(directory)
    ring = ws.keyring()
    if physician not in ring.signing:
        error("unknown_signer", f"no key for {physician} in the keyring")
    cdcs = [o["id"] for o in ws.genesis().doc["orgs"] if o["kind"] == "cdc"]
    target = cdc or (cdcs[0] if len(cdcs) == 1 else None)
    if target is None:
        error("bad_args", f"pass --cdc (the consortium has CDCs {cdcs})")
    with _ledger(directory, relay or f"{draft.org}/gateway") as (client, node):
        raw = node.store.get_state(f"consortium/org/{target}")
        if raw is None:
            error("not_found", f"no organisation {target} on the ledger")
        try:
            args = submit_args(draft, chain_id=client.chain_id, cdc=target,
                               cdc_kex_key=unb64(orjson.loads(raw)["kex_key"], length=32),
                               key=key, physician=physician, physician_key=ring.signing[physician],
                               onset_date=onset)
        except ReportError as exc:
            fail(exc)
        r = client.call("case_reports", "submit", args)
    if not r.ok:
        error(r.code, r.message)
    store.confirmed(draft_id, r.tx_id.hex())
    console.print(f"submitted {draft.org}/{draft_id}: {r.value['disease']} case "
                  f"{r.value['case']} (episode {r.value['episode']}), tx {r.tx_id.hex()[:16]}…")


@app.command("discard")
def discard_cmd(
    draft_id: str = typer.Argument(..., help="The draft (gw-…)."),
    reason: str = typer.Option(..., "--reason", help="Why the physician did not confirm it."),
    vault: Path = typer.Option(..., "--vault", help="The hospital's gateway vault directory."),
    vault_key: Path | None = VaultKeyOpt,
    relay: str | None = typer.Option(None, "--relay", help="The member that records the "
                                     "discard when the draft is on the ledger (default "
                                     "<org>/gateway)."),
    directory: Path = WorkspaceOpt,
) -> None:
    """Discard a draft the physician did not confirm (on the ledger too, if it was recorded)."""
    from medledger.gateway.vault import Vault
    from medledger.surveillance.fromgateway import DraftStore

    try:
        store = DraftStore(Vault(vault, vault_key))
        draft = store.get(draft_id)
        if draft is None:
            error("not_found", f"no draft {draft_id} in {vault}")
        if draft.recorded_tx is not None:
            with _ledger(directory, relay or f"{draft.org}/gateway") as (client, _):
                r = client.call("case_reports", "discard", {"report_id": draft_id,
                                                            "reason": reason})
            if not r.ok:
                error(r.code, r.message)
        store.discarded(draft_id, reason)
    except MedLedgerError as exc:
        fail(exc)
    console.print(f"discarded {draft_id}")
