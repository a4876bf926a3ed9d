"""The gateway vault as a ``RecordSource``: a patient's current, anchored records.

Reads the vault of ``medledger.gateway.vault`` (the gateway package is not changed): records
whose ``subject`` is the patient's pseudonym, current version only, in batches marked anchored.
Each record is released as the vault stores it — the canonical envelope
``{"provenance", "resource"}`` whose SHA-256 is the anchored fingerprint — so the requester can
check it against the batch root on the ledger. The provenance names the source file's hash,
position and profile, not any identifier; the resource is already de-identified.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from medledger.consent.model import ALL
from medledger.consent.sources import SharedRecord
from medledger.gateway.anchor import leaf_id
from medledger.gateway.vault import Vault
from medledger.records.batch import Batch

CATEGORY_OF = {"Observation": "labs", "Condition": "conditions",
               "MedicationRequest": "medications", "MedicationDispense": "medications",
               "Encounter": "encounters", "Patient": "demographics"}
_CURRENT = (
    "SELECT r.record_id, r.version, r.resource_type, r.fingerprint, r.batch_id, r.body "
    "FROM heads h JOIN records r ON r.record_id = h.record_id AND r.version = h.version "
    "JOIN batches b ON b.batch_id = r.batch_id AND b.status = 'anchored' "
    "WHERE r.subject = ? ORDER BY r.record_id")


def category(resource_type: str) -> str:
    return CATEGORY_OF.get(resource_type, resource_type.lower())


class VaultSource:
    """Releases a patient's records from a gateway vault with their batch proofs. Thread-safe:
    the vault's one connection is used by one caller at a time."""

    def __init__(self, vault: Vault) -> None:
        self.vault = vault
        self._batches: dict[str, Batch] = {}
        self._lock = threading.Lock()

    def _batch(self, batch_id: str) -> Batch:
        if batch_id not in self._batches:  # anchored batches never change
            rows = self.vault.iter_rows("SELECT record_id, version, fingerprint FROM records "
                                        "WHERE batch_id=? ORDER BY leaf", (batch_id,))
            self._batches[batch_id] = Batch((leaf_id(r[0], r[1]), bytes.fromhex(r[2]))
                                            for r in rows)
        return self._batches[batch_id]

    def records(self, patient: str, categories: Sequence[str]) -> list[SharedRecord]:
        with self._lock:
            return self._records(patient, set(categories))

    def _records(self, patient: str, wanted: set[str]) -> list[SharedRecord]:
        out = []
        for r in self.vault.iter_rows(_CURRENT, (patient,)):
            cat = category(r["resource_type"])
            if ALL not in wanted and cat not in wanted:
                continue
            batch = self._batch(r["batch_id"])
            index, proof = batch.proof(leaf_id(r["record_id"], r["version"]))
            body = self.vault.record_body(r["record_id"], r["version"], r["body"])
            out.append(SharedRecord(r["record_id"], r["version"], cat, body, r["fingerprint"],
                                    r["batch_id"], index, batch.count, proof))
        return out
