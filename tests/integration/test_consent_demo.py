"""The consent demo end to end (hosp-a's records from its gateway vault), then the
``medledger consent`` commands on its workspace."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medledger.cli.main import app
from medledger.client.light import LightClient, LightClientError
from medledger.consent.exchange import records_digest
from medledger.consent.status import verify_status
from medledger.consent.vault_source import VaultSource
from medledger.demo import consent as consent_demo
from medledger.gateway.vault import Vault
from medledger.workspace import Workspace

pytestmark = pytest.mark.integration


def test_demo_exchanges_the_patients_anchored_records_from_the_vault(tmp_path: Path) -> None:
    result = consent_demo.run(workdir=tmp_path)
    assert result.ok, result.lines
    lines = dict(result.lines)
    assert re.fullmatch(r"\d+ FHIR records of \d+ synthetic patients, de-identified, in \d+ "
                        r"batch(es)? anchored by hosp-a/gw", lines["gateway vault (hosp-a)"])
    patient = lines["patient (pseudonym)"]
    assert re.fullmatch(r"k1-[0-9a-f]{32}", patient)
    n = int(lines["their records in the vault"].split()[0])
    assert lines["referral exchange"].startswith(f"granted: {n} records from hosp-a's vault")
    assert "conditions" in lines["referral exchange"] and "labs" in lines["referral exchange"]
    assert "matching its fingerprint in the batch anchored on the ledger" in \
        lines["referral exchange"]
    # what left the vault is what the vault holds for that pseudonym, current and anchored
    with Vault(tmp_path / "vault-hosp-a") as vault:
        held = VaultSource(vault).records(patient, ["labs", "conditions"])
        labs = sum(r.category == "labs" for r in held)
        assert len(held) == n and {r.category for r in held} == {"labs", "conditions"}
        assert vault.rows("SELECT count(*) FROM batches WHERE status != 'anchored'")[0][0] == 0
    store = Workspace(tmp_path / "consortium").store()
    try:
        for batch in {r.batch_id for r in held}:
            assert store.get_state(f"registry/batch/hosp-a/{batch}") is not None
    finally:
        store.close()
    assert lines["break-glass"].startswith(f"granted for 30 min: {labs} labs from the vault")
    ws = str(tmp_path / "consortium")
    r = CliRunner().invoke(app, ["consent", "log", patient, "--dir", ws, "--json"])
    granted = [i["entry"] for i in json.loads(r.output) if i["entry"]["outcome"] == "granted"]
    assert granted[0]["records"] == n and granted[0]["records_digest"] == records_digest(held)


def test_demo_then_cli_log_and_status(tmp_path: Path) -> None:
    result = consent_demo.run(workdir=tmp_path)
    assert result.ok, result.lines
    lines = dict(result.lines)
    assert lines["next request"].startswith("denied: consent_revoked")
    assert lines["access log"].startswith("7 entries")
    revoked_at = int(lines["revocation"].rsplit(" ", 1)[1])
    patient = lines["patient (pseudonym)"]
    ws = str(tmp_path / "consortium")
    runner = CliRunner()
    r = runner.invoke(app, ["consent", "log", patient, "--dir", ws, "--verify"])
    assert r.exit_code == 0, r.output
    assert r.output.count("proven in checkpoint") == 7 and "consent_revoked" in r.output
    assert "(review: justified)" in r.output and "(review: pending)" in r.output
    r = runner.invoke(app, ["consent", "log", patient, "--dir", ws, "--json"])
    items = json.loads(r.output)
    assert [i["entry"]["outcome"] for i in items].count("granted") == 2
    r = runner.invoke(app, ["consent", "status", patient, "--dir", ws])
    assert json.loads(r.output)["consents"]["referral-0001"]["status"] == "revoked"
    r = runner.invoke(app, ["consent", "status", patient, "--dir", ws, "--height",
                            str(revoked_at - 1)])
    assert json.loads(r.output)["consents"]["referral-0001"]["status"] == "active"
    r = runner.invoke(app, ["consent", "log", "not-a-pseudonym", "--dir", ws])
    assert r.exit_code == 2 and "bad_args" in r.output
    # the auditor reviewed the break-glass grant; the refused attempt is still pending
    r = runner.invoke(app, ["consent", "reviews", "hosp-a", "--dir", ws])
    assert r.exit_code == 0, r.output
    assert "justification_required" in r.output and r.output.endswith("1 pending entries\n")
    r = runner.invoke(app, ["consent", "reviews", "hosp-a", "--dir", ws, "--all", "--json"])
    assert [i["status"] for i in json.loads(r.output)] == ["pending", "justified"]
def test_demo_proves_status_then_cli_prove_and_proof_state(tmp_path: Path) -> None:
    result = consent_demo.run(workdir=tmp_path)
    assert result.ok, result.lines
    lines = dict(result.lines)
    revoked_at = int(lines["revocation"].rsplit(" ", 1)[1])
    statuses = [(k, v) for k, v in result.lines if k.startswith("status at h")]
    assert [v.split(" — ")[0] for _, v in statuses] == ["referral-0001 active",
                                                       "referral-0001 revoked"]
    assert f"index written at h{revoked_at}," in statuses[1][1]
    patient = lines["patient (pseudonym)"]
    ws = str(tmp_path / "consortium")
    runner = CliRunner()

    r = runner.invoke(app, ["consent", "status", patient, "--dir", ws, "--prove"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert doc["consents"]["referral-0001"]["status"] == "revoked"
    assert doc["verified"]["written"] == revoked_at
    assert doc["verified"]["checkpoint_height"] == doc["height"] == doc["proof"]["height"]
    before = str(revoked_at - 1)
    r = runner.invoke(app, ["consent", "status", patient, "--dir", ws, "--height", before,
                            "--prove"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert doc["consents"]["referral-0001"]["status"] == "active"
    assert doc["verified"]["written"] < revoked_at - 1
    r = runner.invoke(app, ["consent", "status", patient, "--dir", ws, "--height", before,
                            "--prove", "--max-blocks", "1"])
    assert r.exit_code == 2 and "bad_proof_request" in r.output

    r = runner.invoke(app, ["proof", "state", f"consent/p/{patient}", "--height", before,
                            "--dir", ws])
    assert r.exit_code == 0, r.output
    proof = json.loads(r.output)
    genesis = Workspace(Path(ws)).genesis()
    light = LightClient(genesis.chain_id, genesis.org_keys())
    consents, fact = verify_status(light, patient, proof, int(before))
    assert consents["referral-0001"]["status"] == "active" and fact.height == int(before)
    with pytest.raises(LightClientError):
        verify_status(light, patient, proof, revoked_at)
    with pytest.raises(LightClientError):  # another patient's index
        verify_status(light, "k1-" + "00" * 16, proof)
    r = runner.invoke(app, ["proof", "state", "consortium/config", "--height", "999",
                            "--dir", ws])
    assert r.exit_code == 2 and "unknown_block" in r.output
