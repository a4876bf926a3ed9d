"""The gateway vault as the holder's source: current versions of the patient's anchored
records only, each proven against the batch anchored on the ledger by the requester."""

from __future__ import annotations

import hashlib
from pathlib import Path

import orjson
from tests.unit.consent.conftest import OTHER, PATIENT, Parties, grant

from medledger.consent.exchange import Holder
from medledger.consent.vault_source import VaultSource
from medledger.crypto.canonical import encode
from medledger.gateway.anchor import leaf_id
from medledger.gateway.vault import Vault
from medledger.records.batch import Batch


def put(vault: Vault, rid: str, version: int, rtype: str, subject: str, batch: str,
        leaf: int) -> tuple[str, bytes]:
    body = encode({"provenance": {"record_id": rid, "version": version},
                   "resource": {"resourceType": rtype, "id": rid}})
    fp = hashlib.sha256(body).hexdigest()
    vault.db.execute(
        "INSERT INTO records (record_id, version, resource_type, subject, resource_hash, "
        "fingerprint, body, batch_id, leaf) VALUES (?,?,?,?,?,?,?,?,?)",
        (rid, version, rtype, subject, "00" * 32, fp,
         vault.sealer.seal(body, f"record|{rid}|{version}".encode()), batch, leaf))
    return leaf_id(rid, version), bytes.fromhex(fp)


def test_vault_records_travel_and_verify(parties: Parties, tmp_path: Path) -> None:
    p = parties
    vault = Vault(tmp_path / "vault")
    entries = [put(vault, "obs-1", 1, "Observation", PATIENT, "vb1", 0),
               put(vault, "obs-1", 2, "Observation", PATIENT, "vb1", 1),
               put(vault, "cond-1", 1, "Condition", PATIENT, "vb1", 2),
               put(vault, "obs-9", 1, "Observation", OTHER, "vb1", 3)]
    batch = Batch(entries)
    vault.db.execute("INSERT INTO batches (batch_id, count, root, status) VALUES "
                     "('vb1', 4, ?, 'anchored')", (batch.root.hex(),))
    put(vault, "obs-2", 1, "Observation", PATIENT, "vb2", 0)  # batch still pending
    vault.db.execute("INSERT INTO batches (batch_id, count, status) VALUES ('vb2', 1, "
                     "'pending')")
    p.lg.ok("hosp-a/gw", "registry", "anchor_batch", {
        "batch_id": "vb1", "root": batch.root.hex(), "count": 4, "record_type": "FHIR",
        "source_system": "gateway", "schema_version": "1"})
    grant(p.lg)
    holder = Holder(p.member("hosp-a/gw"), VaultSource(vault))
    signed = p.requester.request("hosp-a", PATIENT, ["labs"], "referral")
    got = p.requester.accept(signed, holder.handle(signed))
    assert [(r.record_id, r.version, r.category) for r in got] == [("obs-1", 2, "labs")]
    assert orjson.loads(got[0].body)["resource"]["id"] == "obs-1"
    all_cats = VaultSource(vault).records(PATIENT, ["all"])
    assert sorted(r.record_id for r in all_cats) == ["cond-1", "obs-1"]
    vault.close()
