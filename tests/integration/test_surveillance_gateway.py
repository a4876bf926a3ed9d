"""Case reports drafted from hospital gateway runs, end to end on the synthetic hospitals.

hosp-a and hosp-b ingest their exports with ``gateway ingest`` (anchored on a real embedded
node); hosp-a drafts, records and confirms through the Python API, hosp-b through the CLI
(``surveillance draft --from-gateway-run``, ``drafts``, ``confirm``, ``discard``). The persons
the generator puts in both hospitals with COVID-19 days apart are reported twice and counted
once; the CDC opens the identified details; no identifier reaches the ledger.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import date
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from medledger.cli.main import app
from medledger.client.client import Client
from medledger.crypto.keys import SigningKey, b64
from medledger.gateway import service
from medledger.gateway.deid import Pseudonymizer, PseudonymKey
from medledger.gateway.scan import pattern_leaks
from medledger.gateway.synth import ADDRESS_DISTRICTS, Generator, generate
from medledger.gateway.vault import Vault
from medledger.surveillance import casefile, views
from medledger.surveillance.casefile import patient_pseudonym
from medledger.surveillance.fromgateway import (
    GATEWAY_PSEUDONYM,
    DraftStore,
    GatewayRules,
    draft_run,
    record_args,
    submit_args,
)
from medledger.workspace import Workspace

pytestmark = pytest.mark.integration
SEED, PERSONS, ROWS, SHARED = 3, 60, 60, 4
RULES_DOC = {"diagnosis": [{"id": "notifiable-dx"}],
             "districts": [list(e) for e in ADDRESS_DISTRICTS]}


def test_two_hospitals_gateway_runs_yield_linked_reports_counted_once(tmp_path: Path) -> None:
    generate(tmp_path / "syn", seed=SEED, persons=PERSONS, rows=ROWS, notifiable=SHARED)
    cases = Generator(SEED, PERSONS, ROWS, notifiable=SHARED).cases
    assert len(cases) == SHARED
    key_path = tmp_path / "pseudonym.key"
    key = PseudonymKey.generate(key_path)
    shared = {patient_pseudonym(key.secret, GATEWAY_PSEUDONYM,
                                Pseudonymizer(key).pseudonym("cn-rid", p.rid), "covid-19"): p
              for p, _, _ in cases}
    rules = GatewayRules.from_doc(RULES_DOC)
    rules_path = tmp_path / "rules.json"
    rules_path.write_text(json.dumps(RULES_DOC))

    ws = Workspace.init(tmp_path / "ws", "surv-gw")
    ring = ws.keyring()
    runs: dict[str, tuple[Vault, str, list[Path]]] = {}
    with ws.node(max_block_txs=100, max_wait=0.005) as node:
        for member, role in (("hosp-a/gateway", "gateway"), ("hosp-b/gateway", "gateway"),
                             ("hosp-a/dr-li", "physician"), ("hosp-b/dr-wu", "physician")):
            k = ring.signing[member] = SigningKey.generate()
            org = member.split("/")[0]
            assert Client(node, node.chain_id, f"{org}/root", ring.signing[f"{org}/root"]).call(
                "consortium", "enroll", {"member": member, "role": role,
                                         "public_key": b64(k.public)}).ok
        for site in ("hosp-a", "hosp-b"):           # `gateway ingest`, anchored
            files = sorted(p for p in (tmp_path / "syn" / site).iterdir()
                           if p.suffix != ".toml")
            vault = Vault(tmp_path / "vault" / site)
            with service.ledger(ws.root, site, node=node) as anchorer:
                run_id, reports = service.ingest_export_dir(vault, key, files, site, anchorer)
            assert all(r.balanced for r in reports)
            runs[site] = (vault, run_id, files)

        # hosp-a: Python API — draft, record the digest, physician confirms, submit
        vault, run_id, files = runs["hosp-a"]
        got = draft_run(vault, key, run_id, files, rules)
        assert got.unread == [] and len(got.new) >= SHARED
        assert shared.keys() <= {d.patient for d in got.new}
        for p, first, _ in cases:                    # the true date, not the vault's shifted one
            assert any(shared.get(x.patient) is p and x.draft.fields.diagnosis_date ==
                       first.isoformat() for x in got.new)
        gw = Client(node, node.chain_id, "hosp-a/gateway", ring.signing["hosp-a/gateway"])
        cdc_kex = ring.agreement["cdc"].public
        store = DraftStore(vault)
        first_cases = Counter()
        for d in got.new:
            r = gw.call("case_reports", "draft", record_args(d))
            assert r.ok, r
            store.recorded(d.id, r.tx_id.hex())
            args = submit_args(d, chain_id=node.chain_id, cdc="cdc", cdc_kex_key=cdc_kex,
                               key=key, physician="hosp-a/dr-li",
                               physician_key=ring.signing["hosp-a/dr-li"])
            r = gw.call("case_reports", "submit", args)
            assert r.ok, r
            store.confirmed(d.id, r.tx_id.hex())
            first_cases[r.value["case"]] += 1
        assert first_cases["new"] >= SHARED
    ring.save(ws.keyring_path)

    # hosp-b: the CLI, on the same workspace (the embedded node is started per command)
    vault_b, run_b, files_b = runs["hosp-b"]
    vault_b.close()
    cli = CliRunner()
    d = ["--dir", str(ws.root)]
    hosp_b = ["--vault", str(tmp_path / "vault" / "hosp-b"), "--pseudonym-key", str(key_path)]
    out = cli.invoke(app, ["surveillance", "draft", "--rules", str(rules_path),
                           "--from-gateway-run", run_b, *[str(f) for f in files_b], *hosp_b,
                           "--record-as", "hosp-b/gateway", *d])
    assert out.exit_code == 0, out.output
    doc = json.loads(out.output)
    drafted = {x["patient"]: x for x in doc["drafts"]}
    assert shared.keys() <= drafted.keys() and doc["unread"] == []
    assert set(doc["recorded"].values()) == {"ok"}
    for p, _, second in cases:                       # true dates, district from the address
        x = next(x for x in doc["drafts"] if shared.get(x["patient"]) is p)
        assert x["fields"]["diagnosis_date"] == second.isoformat()
        assert x["fields"]["district"] == dict(ADDRESS_DISTRICTS)[["Riverside", "Lakeside",
                                                                   "Hillview"][p.city]]
        assert x["fields"]["sex"] == ("female" if p.female else "male")
    again = cli.invoke(app, ["surveillance", "draft", "--rules", str(rules_path),
                             "--from-gateway-run", run_b, *[str(f) for f in files_b], *hosp_b])
    assert json.loads(again.output)["drafts"] == []          # idempotent
    listed = cli.invoke(app, ["surveillance", "drafts", "--vault", hosp_b[1], "--status",
                              "open"])
    assert listed.exit_code == 0 and listed.output.count("gw-") == len(doc["drafts"])
    some = next(iter(shared))
    shown = cli.invoke(app, ["surveillance", "drafts", "--vault", hosp_b[1], "--show",
                             drafted[some]["id"]])
    assert json.loads(shown.output)["patient_details"]["identifier"][0]["value"] == \
        shared[some].rid
    linked_ids = []
    for pseud in shared:
        done = cli.invoke(app, ["surveillance", "confirm", drafted[pseud]["id"], "--as",
                                "hosp-b/dr-wu", *hosp_b, *d])
        assert done.exit_code == 0, done.output
        assert "covid-19 case linked" in " ".join(done.output.split())
        linked_ids.append(drafted[pseud]["id"])
    other = next(x for x in doc["drafts"] if x["patient"] not in shared)
    dropped = cli.invoke(app, ["surveillance", "discard", other["id"], "--reason",
                               "ruled out on review", "--vault", hosp_b[1], *d])
    assert dropped.exit_code == 0, dropped.output
    refused = cli.invoke(app, ["surveillance", "confirm", other["id"], "--as", "hosp-b/dr-wu",
                               *hosp_b, *d])
    assert refused.exit_code == 2 and "invalid_state" in " ".join(refused.output.split())

    # the ledger: one case per shared person, two linked reports; counts agree
    state = ws.store()
    for pseud in shared:
        case = orjson.loads(state.get_state(f"case_reports/case/covid-19/{pseud}"))
        [episode] = [e for e in case["episodes"] if e["counted"] is not None]
        assert sorted(r.split("/")[0] for r in episode["reports"]) == ["hosp-a", "hosp-b"]
    reports = [orjson.loads(v) for _, v in state.scan_state("case_reports/report/", 100_000)]
    submitted = [r for r in reports if r["status"] == "submitted" and r["disease"] == "covid-19"]
    episodes = 0
    for pseud in {r["patient"] for r in submitted}:
        case = orjson.loads(state.get_state(f"case_reports/case/covid-19/{pseud}"))
        episodes += sum(e["counted"] is not None for e in case["episodes"])
    districts = views.districts(state, "covid-19")
    _, per_day = views.daily(state, "covid-19", districts, date(2021, 12, 1), date(2024, 12, 31))
    assert sum(per_day) == episodes <= len(submitted) - SHARED
    assert {r["status"] for r in reports if r["report_id"] == other["id"]} == {"discarded"}

    # only the CDC opens the details: the identified person and the confirming physician
    rec = next(r for r in submitted if r["report_id"] == linked_ids[0])
    opened = casefile.open_report(ws.genesis().doc["chain_id"], rec,
                                  ring.agreement["cdc"].secret, state)
    assert opened.ok, opened.problems
    assert opened.physician == "hosp-b/dr-wu"
    assert opened.patient["identifier"][0]["value"] == shared[rec["patient"]].rid
    # and nothing identifying is on the ledger
    rids = [p.rid for p in shared.values()]
    head = state.head()
    assert head is not None
    txs = state.txs_range(0, head.first_index + head.tx_count)
    n_submitted = sum(r["status"] == "submitted" for r in reports)
    assert sum(b'"submit"' in t.raw for t in txs) == n_submitted
    for t in txs:
        assert not pattern_leaks(t.raw.decode()) and not any(r.encode() in t.raw for r in rids)
