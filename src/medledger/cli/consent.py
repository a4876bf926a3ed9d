"""``medledger consent``: a patient's consents and access log, read from the workspace's store."""

from __future__ import annotations

import json
import re
import sys
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import NoReturn

import typer

from medledger.cli.common import WorkspaceOpt, error, fail, workspace
from medledger.client.light import LightClient
from medledger.consent.errors import ExchangeError
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


@app.command("request")
def request(
    holder_url: str = typer.Option(..., "--holder-url", help="The holder's node API (served "
                                   "with `medledger node start --holder-vault`)."),
    holder: str = typer.Option(..., "--holder", help="The holding organisation's id."),
    patient: str = typer.Option(..., "--patient", help="The patient's consortium pseudonym."),
    categories: str = typer.Option(..., "--categories", help="Comma-separated data categories "
                                   "(labs, conditions, medications, …; all)."),
    purpose: str = typer.Option(..., "--purpose", help="treatment, referral, research, "
                                "insurance-claim or public-health."),
    member: str = typer.Option(..., "--as", help="Requesting member (org/name); its signing "
                               "key and its organisation's key-agreement key from the keyring."),
    node_url: str = typer.Option(..., "--node-url", help="Your organisation's node API: the "
                                 "delivery is checked against its ledger (anchored "
                                 "fingerprints, the holder's grant entry)."),
    out: Path | None = typer.Option(None, "--out", help="Write the checked records and a "
                                    "manifest.json here (default: print a summary only)."),
    justification: str | None = typer.Option(None, "--justification", help="Break-glass: "
                                             "the emergency's justification."),
    minutes: int = typer.Option(60, "--minutes", min=1, max=24 * 60,
                                help="Break-glass: how long the grant may be used."),
    wait: float = typer.Option(10.0, "--wait", min=0, help="Seconds to wait for the holder's "
                               "grant entry to reach your node."),
    as_json: bool = typer.Option(False, "--json", help="Print the outcome as JSON."),
    directory: Path = WorkspaceOpt,
) -> None:
    """Ask a holder for a patient's records: sign the request, open the HPKE delivery, check
    every record against its anchored fingerprint and the whole against the holder's grant
    entry on your node's ledger. A refusal prints its reason and access-log entry (exit 1)."""
    import httpx

    from medledger.client.http import HttpTransport
    from medledger.consent.exchange import Requester
    from medledger.consent.remote import HttpLedgerMember, request_records, write_records
    from medledger.consent.serving import now_ms

    ws = workspace(directory)
    ring = ws.keyring()
    org = member.split("/")[0]
    if member not in ring.signing or org not in ring.agreement:
        error("unknown_signer", f"the keyring has no signing key of {member} or no "
              f"key-agreement key of {org}")
    cats = [c.strip() for c in categories.split(",") if c.strip()]
    key = ring.signing[member]
    with HttpTransport(node_url, member, key) as transport, \
            httpx.Client(base_url=holder_url.rstrip("/").removesuffix("/v1"),
                         timeout=60.0) as http:
        ledger = HttpLedgerMember(transport, ws.genesis().chain_id, member, key, now_ms)
        requester = Requester(ledger, ring.agreement[org].secret)
        try:
            got = request_records(requester, http, holder, patient, cats, purpose,
                                  justification=justification, minutes=minutes, wait=wait)
        except ExchangeError as exc:
            _refused(exc, as_json)
        except MedLedgerError as exc:
            fail(exc)
    manifest = None if out is None else write_records(out, got)
    if as_json:
        print(json.dumps({"outcome": "granted", "request_id": got.delivery.request_id,
                          "entry": got.delivery.entry, "records": len(got.records),
                          "manifest": None if manifest is None else str(manifest)}, indent=1))
        return
    kinds = Counter(r.category for r in got.records)
    print(f"granted: {len(got.records)} records from {got.delivery.holder} "
          f"({', '.join(f'{n} {c}' for c, n in sorted(kinds.items())) or 'none'}), every one "
          "matching its fingerprint anchored on the ledger and the holder's grant entry")
    print(f"access entry: {got.delivery.entry}")
    if manifest is not None:
        print(f"written: {manifest}")


def _refused(exc: ExchangeError, as_json: bool) -> NoReturn:
    """The holder's refusal (or this side's rejection): reason, message, access entry; exit 1."""
    reason = exc.reason.value
    message = exc.message.removeprefix(f"{reason}: ")
    if as_json:
        print(json.dumps({"outcome": "denied", "reason": reason, "code": str(exc.code),
                          "message": message, "entry": exc.entry}, indent=1))
    else:
        print(f"denied: {reason} [{exc.code}] {message}")
        print(f"access entry: {exc.entry or '(none recorded)'}")
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
