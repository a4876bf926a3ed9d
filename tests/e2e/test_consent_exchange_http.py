"""A hospital serves its holder gateway with ``medledger node start --holder-vault`` (a real
process on a loopback port); another hospital asks with ``medledger consent request``.

hosp-a's gateway first ingests its synthetic exports into its vault and anchors them (the
gateway's public functions, as the consent demo does). The requester and the holder share one
embedded node (one ledger): granted → every record checked and written; after the patient
revokes → denied ``consent_revoked`` with an access entry, visible in the patient's log over the
API and with ``medledger consent log --verify``.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medledger.cli.main import app
from medledger.client.http import HttpTransport
from medledger.client.light import LightClient
from medledger.cluster.natsd import free_port
from medledger.consent.log import verify_item
from medledger.consent.vault_source import VaultSource
from medledger.demo.consent import MEMBERS, ORGS, REFERRAL, ingest, pick_patient
from medledger.errors import MedLedgerError
from medledger.gateway.deid import PseudonymKey
from medledger.workspace import Workspace

pytestmark = [pytest.mark.slow, pytest.mark.integration]
DAY = 86_400_000
runner = CliRunner()


@dataclass
class Hospital:
    ws: Workspace
    vault: Path
    patient: str
    expected: dict[tuple[str, int], str]  # (record id, version) -> fingerprint
    url: str = ""


def _cli(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def hospital(tmp_path_factory: pytest.TempPathFactory) -> Hospital:
    root = tmp_path_factory.mktemp("exchange")
    ws = Workspace.init(root / "ws", "e2e-exchange", ORGS, MEMBERS)
    key = PseudonymKey("k1", secrets.token_bytes(32))
    with ws.node(max_wait=0.002, admit_processes=0) as node:
        vault, _ = ingest(ws, node, root, key)
    with vault:
        _, patient, records = pick_patient(VaultSource(vault), key)
    return Hospital(ws, vault.root, patient,
                    {(r.record_id, r.version): r.fingerprint for r in records})


@pytest.fixture
def served(hospital: Hospital) -> Iterator[Hospital]:
    port = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "medledger.cli.main", "node", "start", "--dir",
         str(hospital.ws.root), "--port", str(port), "--max-wait-ms", "2",
         "--admit-processes", "0", "--holder-vault", str(hospital.vault),
         "--holder-member", "hosp-a/gw"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    hospital.url = f"http://127.0.0.1:{port}"
    try:
        with HttpTransport(hospital.url) as probe:
            deadline = time.monotonic() + 60
            while True:
                try:
                    probe.health()
                    break
                except MedLedgerError:
                    assert proc.poll() is None, proc.communicate()[0].decode()
                    assert time.monotonic() < deadline, "node did not start"
                    time.sleep(0.2)
        yield hospital
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    text = out.decode()
    assert "holder gateway of hosp-a (records as hosp-a/gw)" in text, text
    assert proc.returncode == 0 and "stopped at height" in text, text


def _submit(h: Hospital, member: str, contract: str, method: str,
            args: dict[str, object]) -> None:
    code, out = _cli("tx", "submit", "--dir", str(h.ws.root), "--url", h.url, "--as", member,
                     contract, method, json.dumps(args))
    assert code == 0, out


def _request(h: Hospital, out: Path, *extra: str) -> tuple[int, str]:
    return _cli("consent", "request", "--dir", str(h.ws.root), "--holder-url", f"{h.url}/v1",
                "--holder", "hosp-a", "--patient", h.patient, "--categories",
                ",".join(REFERRAL), "--purpose", "referral", "--as", "hosp-b/dr-wu",
                "--node-url", h.url, "--out", str(out), *extra)


def test_a_served_holder_grants_then_denies_after_revocation(served: Hospital,
                                                             tmp_path: Path) -> None:
    h = served
    code, out = _request(h, tmp_path / "none", "--json")
    assert code == 1, out
    refused = json.loads(out)
    assert (refused["outcome"], refused["reason"], refused["code"]) == (
        "denied", "no_consent", "forbidden")
    assert refused["entry"].startswith(f"e/{h.patient}/")

    _submit(h, "hosp-a/steward", "consent", "link_agent",
            {"patient": h.patient, "member": "patients/agent-0001"})
    t = time.time_ns() // 1_000_000
    _submit(h, "patients/agent-0001", "consent", "grant", {
        "consent_id": "referral-e2e", "patient": h.patient, "purpose": "referral",
        "categories": REFERRAL, "recipient_org": "hosp-b", "start": t - 1000,
        "end": t + 30 * DAY})

    code, out = _request(h, tmp_path / "got")
    assert code == 0, out
    assert f"granted: {len(h.expected)} records from hosp-a" in out
    granted_entry = out.split("access entry: ")[1].split()[0]
    manifest = json.loads((tmp_path / "got" / "manifest.json").read_text())
    assert manifest["entry"] == granted_entry and manifest["holder"] == "hosp-a"
    got = {}
    for row in manifest["records"]:
        body = (tmp_path / "got" / row["file"]).read_bytes()
        assert hashlib.sha256(body).hexdigest() == row["fingerprint"]
        assert json.loads(body)["resource"]["subject"]["reference"] == f"Patient/{h.patient}"
        got[(row["record_id"], row["version"])] = row["fingerprint"]
    assert got == h.expected  # exactly the patient's anchored labs and conditions

    _submit(h, "patients/agent-0001", "consent", "revoke",
            {"consent_id": "referral-e2e", "reason": "referral finished"})
    code, out = _request(h, tmp_path / "after")
    assert code == 1, out
    assert "denied: consent_revoked [forbidden]" in out
    denied_entry = out.split("access entry: ")[1].split()[0]
    assert denied_entry.startswith(f"e/{h.patient}/")
    assert not (tmp_path / "after" / "manifest.json").exists()

    ring = h.ws.keyring()
    with HttpTransport(h.url, "hosp-a/auditor", ring.signing["hosp-a/auditor"]) as auditor:
        log = auditor.get(f"/v1/consent/patients/{h.patient}/log")["entries"]
    by_key = {item["key"]: item["entry"] for item in log}
    assert [e["outcome"] for e in by_key.values()] == ["denied", "granted", "denied"]
    assert by_key[granted_entry]["records"] == len(h.expected)
    revoked = by_key[denied_entry]
    assert (revoked["reason"], revoked["requester"], revoked["consent_id"]) == (
        "consent_revoked", "hosp-b/dr-wu", "referral-e2e")
    genesis = h.ws.genesis()
    light = LightClient(genesis.chain_id, genesis.org_keys())
    for item in log:
        verify_item(light, item)

    code, out = _cli("consent", "log", h.patient, "--verify", "--dir", str(h.ws.root))
    assert code == 0, out
    assert "denied (consent_revoked)" in out and "3 entries" in out
    assert out.count("proven in checkpoint") == 3


def test_node_start_refuses_a_holder_it_cannot_serve(hospital: Hospital, tmp_path: Path) -> None:
    base = ["node", "start", "--dir", str(hospital.ws.root), "--port", str(free_port()),
            "--admit-processes", "0"]
    code, out = _cli(*base, "--holder-vault", str(tmp_path / "nothing"))
    assert code == 2 and "not_found" in out and "no gateway vault" in out, out
    code, out = _cli(*base, "--holder-vault", str(hospital.vault), "--holder-member",
                     "hosp-b/dr-wu")
    assert code == 2 and "forbidden" in out, out
    code, out = _cli(*base, "--holder-vault", str(hospital.vault), "--holder-vault-key",
                     str(tmp_path / "no.key"))
    assert code == 2 and "no vault key" in out, out
    code, out = _cli(*base, "--holder-vault", str(hospital.vault), "--holder-member",
                     "hosp-a/nobody")
    assert code == 2 and "unknown_signer" in out, out
