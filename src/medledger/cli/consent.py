"""``medledger consent``: a patient's consents and access log, read from the workspace's store."""

from __future__ import annotations

import json
import re
import sys
from datetime import UTC, datetime
from pathlib import Path

import orjson
import typer

from medledger.cli.common import WorkspaceOpt, error, fail, workspace
from medledger.client.light import LightClient
from medledger.consent.log import patient_log, verify_item
from medledger.consent.model import PATIENT, patient_key
from medledger.errors import MedLedgerError

app = typer.Typer(help="Patient consent and the patient's access log.", no_args_is_help=True)


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


@app.command("status")
def status(
    patient: str = typer.Argument(..., help="The patient's consortium pseudonym."),
    height: int = typer.Option(None, "--height", min=0, help="As of this height (default: head)."),
    directory: Path = WorkspaceOpt,
) -> None:
    """The patient's consents (purpose, categories, recipient, period, status) at a height."""
    if not re.match(PATIENT, patient):
        error("bad_args", f"{patient!r} is not a consortium pseudonym")
    store = workspace(directory).store()
    key = f"consent/{patient_key(patient)}"
    if height is None:
        raw = store.get_state(key)
    else:
        found = store.state_at(key, height)
        raw = None if found is None else found[1]
    print(json.dumps({"patient": patient, "height": height,
                      "consents": {} if raw is None else orjson.loads(raw)}, indent=1))


@app.command("log")
def log(
    patient: str = typer.Argument(..., help="The patient's consortium pseudonym."),
    verify: bool = typer.Option(False, "--verify", help="Check every entry's inclusion proof "
                                "against a checkpoint signed by a genesis organisation key."),
    as_json: bool = typer.Option(False, "--json", help="Print entries with proofs as JSON."),
    directory: Path = WorkspaceOpt,
) -> None:
    """Every access to the patient's records: who, when, why, outcome, and its proof."""
    ws = workspace(directory)
    store = ws.store()
    try:
        items = patient_log(store, patient)
    except MedLedgerError as exc:
        fail(exc)
    genesis = ws.genesis()
    light = LightClient(genesis.chain_id, genesis.org_keys())
    bad = 0
    for item in items:
        proof_text = f"tx {item['entry']['tx'][:16]} leaf {item['proof']['index']}"
        if verify:
            try:
                proof_text += f" proven in checkpoint {verify_item(light, item)}"
            except MedLedgerError as exc:
                bad += 1
                proof_text += f" NOT PROVEN [{exc.code}] {exc.message}"
        item["proof_status"] = proof_text
    if as_json:
        print(json.dumps(items, indent=1))
    else:
        for item in items:
            e = item["entry"]
            flag = " BREAK-GLASS" if e["break_glass"] else ""
            print(f"{_when(e['time'])}  h{e['height']}  {e['requester']} -> {e['holder']}  "
                  f"{e['purpose']} {','.join(e['categories'])}  {e['outcome']} "
                  f"({e['reason']}){flag}  {item['proof_status']}")
        print(f"{len(items)} entries")
    if bad:
        raise typer.Exit(1)


def bench(
    consents: int = typer.Option(1_000_000, min=1, help="Consents granted through the node "
                                 "(two per patient)."),
    checks: int = typer.Option(10_000, min=1, help="Consent checks timed."),
    records: int = typer.Option(1_000, min=1, help="Records in the end-to-end exchange."),
    workdir: Path = typer.Option(None, "--workdir", help="Keep the workspace here (new or "
                                 "empty directory); default: a temporary directory."),
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON."),
) -> None:
    """Consent check with many consents on the ledger (target ≤ 1 ms) and one exchange of
    many records end to end (target 1,000 in ≤ 2 s); registered as ``bench consent``."""
    import tempfile

    from medledger.consent.bench import run

    with tempfile.TemporaryDirectory(prefix="medledger-bench-consent-") as tmp:
        root = workdir or Path(tmp)
        r = run(root, consents, checks, records,
                progress=lambda s: print(s, file=sys.stderr, flush=True))
    if as_json:
        print(json.dumps(r.to_doc(), indent=1))
        return
    c, p, x = r.check_us, r.past_check_us, r.exchange_ms
    print(f"consents granted through the node: {r.consents:,} in {r.load_seconds:.1f} s "
          f"({r.consents / r.load_seconds:,.0f} tx/s); store {r.db_bytes / 1e9:.2f} GB")
    print(f"consent check, now ({checks:,} random patients, cold store): mean "
          f"{c['mean']:.0f} µs, p50 {c['p50']:.0f} µs, p99 {c['p99']:.0f} µs, max "
          f"{c['max']:.0f} µs (target ≤ 1,000 µs)")
    print(f"consent check at a past height: mean {p['mean']:.0f} µs, p99 {p['p99']:.0f} µs")
    print(f"exchange of {r.records:,} records end to end: {x['total']:.0f} ms (request "
          f"{x['request']:.1f}, holder {x['holder']:.0f}, requester {x['requester']:.0f}; "
          f"{x['sealed_bytes'] / 1e6:.2f} MB sealed) (target ≤ 2,000 ms)")
