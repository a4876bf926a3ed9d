"""``medledger consent``: a patient's consents and access log, read from the workspace's store."""

from __future__ import annotations

import json
import re
import sys
from datetime import UTC, datetime
from pathlib import Path

import typer

from medledger.cli.common import WorkspaceOpt, error, fail, workspace
from medledger.client.light import LightClient
from medledger.consent.log import patient_log, verify_item
from medledger.consent.model import PATIENT
from medledger.consent.reviews import flagged
from medledger.consent.status import status_doc, verify_status
from medledger.errors import MedLedgerError
from medledger.ledger.stateproof import DEFAULT_MAX_BLOCKS

app = typer.Typer(help="Patient consent and the patient's access log.", no_args_is_help=True)


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


@app.command("status")
def status(
    patient: str = typer.Argument(..., help="The patient's consortium pseudonym."),
    height: int = typer.Option(None, "--height", min=0, help="As of this height (default: head;"
                               " with --prove the newest checkpointed block)."),
    prove: bool = typer.Option(False, "--prove", help="Add the key-history proof of the "
                               "patient's consent index and check it with the light client "
                               "against a checkpoint signed by a genesis organisation key."),
    max_blocks: int = typer.Option(DEFAULT_MAX_BLOCKS, "--max-blocks", min=1,
                                   help="With --prove: refuse a proof of more block headers."),
    directory: Path = WorkspaceOpt,
) -> None:
    """The patient's consents (purpose, categories, recipient, period, status) at a height."""
    if not re.match(PATIENT, patient):
        error("bad_args", f"{patient!r} is not a consortium pseudonym")
    ws = workspace(directory)
    try:
        doc = status_doc(ws.store(), patient, height, prove=prove, max_blocks=max_blocks)
    except MedLedgerError as exc:
        fail(exc)
    if prove:
        genesis = ws.genesis()
        try:
            consents, fact = verify_status(LightClient(genesis.chain_id, genesis.org_keys()),
                                           patient, doc["proof"], doc["height"])
        except MedLedgerError as exc:
            print(json.dumps(doc, indent=1))
            fail(exc, exit_code=1)
        doc["verified"] = {
            "written": fact.written, "blocks": fact.blocks, "checkpoint_size": fact.checkpoint.size,
            "checkpoint_height": fact.anchor}
        if consents != doc["consents"]:
            print(json.dumps(doc, indent=1))
            error("verify_failed", "the proven consent index differs from the one shown", 1)
    print(json.dumps(doc, indent=1))


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
            if item.get("review"):
                flag += f" (review: {item['review']['status']})"
            who = e["requester"]
            if e.get("claimed_requester"):  # nobody authenticated (ADR 0045)
                who = f"unauthenticated, claims {e['claimed_requester']} (recorded by {who})"
            print(f"{_when(e['time'])}  h{e['height']}  {who} -> {e['holder']}  "
                  f"{e['purpose']} {','.join(e['categories'])}  {e['outcome']} "
                  f"({e['reason']}){flag}  {item['proof_status']}")
        print(f"{len(items)} entries")
    if bad:
        raise typer.Exit(1)


@app.command("reviews")
def reviews(
    org: str = typer.Argument(..., help="The holder organisation whose auditor reviews."),
    show_all: bool = typer.Option(False, "--all", help="Also the entries already reviewed."),
    as_json: bool = typer.Option(False, "--json", help="Print the reviews as JSON."),
    directory: Path = WorkspaceOpt,
) -> None:
    """Break-glass entries flagged for the organisation's auditor (pending unless --all); the
    auditor closes one with ``access.review(entry, justified|unjustified, note)``."""
    ws = workspace(directory)
    try:
        items = flagged(ws.store(), org, pending_only=not show_all)
    except MedLedgerError as exc:
        fail(exc)
    if as_json:
        print(json.dumps(items, indent=1))
        return
    for item in items:
        e = item["entry"] or {}
        print(f"{item['status']:<11}  {item['key']}  {_when(e.get('time', 0))}  "
              f"{e.get('requester')} {e.get('purpose')} {','.join(e.get('categories', []))}  "
              f"{e.get('outcome')} ({e.get('reason')})")
    print(f"{len(items)} {'flagged' if show_all else 'pending'} entries")


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
