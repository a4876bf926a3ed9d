"""``medledger surveillance counts | monitor | signals | draft`` on a real workspace, and the
surveillance demo end to end (slow)."""

from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medledger.cli.main import app
from medledger.client.client import Client
from medledger.crypto.keys import SigningKey, b64
from medledger.surveillance import casefile
from medledger.surveillance.calendar import iso_week, utc_date
from medledger.surveillance.casefile import CaseFields
from medledger.workspace import Workspace

pytestmark = pytest.mark.integration


def _workspace(tmp_path: Path) -> tuple[Workspace, str]:
    ws = Workspace.init(tmp_path / "ws", "cli-surv")
    ring = ws.keyring()
    with ws.node(max_wait=0.001) as node:
        day = utc_date(node.head.time) - timedelta(days=7)
        members = {"hosp-a/gateway": "gateway", "hosp-a/dr": "physician",
                   "cdc/monitor": "service"}
        for member, role in members.items():
            key = ring.signing[member] = SigningKey.generate()
            org = member.split("/")[0]
            r = Client(node, node.chain_id, f"{org}/root", ring.signing[f"{org}/root"]).call(
                "consortium", "enroll", {"member": member, "role": role,
                                         "public_key": b64(key.public)})
            assert r.ok, r
        gw = Client(node, node.chain_id, "hosp-a/gateway", ring.signing["hosp-a/gateway"])
        kex = ring.agreement["cdc"].public
        for i in range(6):
            fields = CaseFields("A00.1", day.isoformat(), "110105", "25-44", "male",
                                "confirmed", day.isoformat())
            args = casefile.seal_report(
                chain_id=node.chain_id, org="hosp-a", report_id=f"r{i}", cdc="cdc",
                cdc_kex_key=kex, fields=fields, patient_id=("nid", f"P{i}"),
                patient_details={}, pseudonym_key=b"k" * 32, physician="hosp-a/dr",
                physician_key=ring.signing["hosp-a/dr"])
            assert gw.call("case_reports", "submit", args).ok
    ring.save(ws.keyring_path)
    return ws, iso_week(day)


def test_counts_monitor_and_signals(tmp_path: Path) -> None:
    ws, week = _workspace(tmp_path)
    runner = CliRunner()
    d = ["--dir", str(ws.root)]
    counts = runner.invoke(app, ["surveillance", "counts", "--disease", "cholera", "--from",
                                 week, "--to", week, *d])
    assert counts.exit_code == 0, counts.output
    assert f"{week}      6" in counts.output
    bad = runner.invoke(app, ["surveillance", "counts", "--disease", "cholera", "--from",
                              "2026-W99", "--to", week, *d])
    assert bad.exit_code == 2 and "bad_args" in bad.output
    run = runner.invoke(app, ["surveillance", "monitor", "--week", week, "--as", "cdc/monitor",
                              "--history", "30", *d])
    assert run.exit_code == 0, run.output
    assert "red    cholera {'district': '110105'} single-case" in run.output
    assert "recorded " in run.output
    listed = runner.invoke(app, ["surveillance", "signals", *d])
    assert "open" in listed.output and "single-case observed 6" in listed.output


def test_draft_prints_drafts_and_skips(tmp_path: Path) -> None:
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps({"diagnosis": [{"id": "dx"}]}))
    bundle = tmp_path / "bundle.json"
    bundle.write_text(json.dumps({"resourceType": "Bundle", "entry": [
        {"resource": {"resourceType": "Patient", "id": "p", "gender": "female",
                      "identifier": [{"system": "s", "value": "v"}],
                      "address": [{"district": "110105"}]}},
        {"resource": {"resourceType": "Condition", "id": "c", "subject": {
            "reference": "Patient/p"}, "recordedDate": "2025-01-02", "code": {"coding": [
                {"system": "http://hl7.org/fhir/sid/icd-10", "code": "B05.9"}]}}},
        {"resource": {"resourceType": "Condition", "id": "c2", "subject": {
            "reference": "Patient/q"}, "recordedDate": "2025-01-02", "code": {"coding": [
                {"system": "http://hl7.org/fhir/sid/icd-10", "code": "B05.9"}]}}}]}))
    out = CliRunner().invoke(app, ["surveillance", "draft", "--rules", str(rules), "--input",
                                   str(bundle)])
    assert out.exit_code == 0, out.output
    doc = json.loads(out.output)
    assert [d["disease"] for d in doc["drafts"]] == ["measles"]
    assert doc["skipped"][0]["code"] == "not_found"
    broken = CliRunner().invoke(app, ["surveillance", "draft", "--rules", str(bundle),
                                      "--input", str(tmp_path / "missing.json")])
    assert broken.exit_code == 2 and "bad_args" in broken.output


@pytest.mark.slow
def test_surveillance_demo_end_to_end(tmp_path: Path) -> None:
    from medledger.demo import surveillance

    png = tmp_path / "curve.png"
    out = surveillance.run(png=png, workdir=tmp_path / "w")
    text = "\n".join(f"{a}: {b}" for a, b in out.lines)
    assert out.ok, text
    assert "5 linked, not double-counted" in text and "identical" in text
    # the alerting outbreak's reports come through gateway runs, in one district (R7.26)
    assert "hosp-a gateway ingest of 28 Shigella stool cultures" in text
    assert "24 lab-confirmed drafts from the run (district 110101" in text
    assert "submitted: 24 new cases" in text
    assert "red shigellosis {'district': '110101'} farrington-flexible: 24 cases" in text
    assert "not through the gateways" in text      # the background, said so
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and os.path.getsize(png) > 5000
