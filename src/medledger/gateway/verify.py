"""``gateway verify``: recompute every record in the vault and match it against the ledger.

For each record: the sealed body must open (AES-GCM authenticates it), its SHA-256 must equal
the stored fingerprint, the resource inside must hash to the stored resource hash, and its
provenance must name the same record id and version. For each batch: the RFC 9162 root
rebuilt from its records' ``(leaf id, fingerprint)`` entries, in leaf order, must equal the
stored root and — with a ledger — the root anchored by ``registry.anchor_batch``.
Also anchors batches still pending (e.g. after a run without a ledger) on request.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from medledger.gateway.anchor import Anchorer, leaf_id
from medledger.gateway.errors import GatewayError, RowRejected
from medledger.gateway.fhir import Validator
from medledger.gateway.pipeline import SCHEMA_VERSION, canonical
from medledger.gateway.scan import pattern_leaks
from medledger.gateway.vault import Vault
from medledger.records.batch import Batch


@dataclass
class VerifyReport:
    records: int = 0
    batches: int = 0
    anchored: int = 0
    pending: int = 0
    fhir_valid: int = 0
    findings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings

    def to_doc(self) -> dict[str, Any]:
        return {"ok": self.ok, "records": self.records, "batches": self.batches,
                "anchored": self.anchored, "pending": self.pending,
                "fhir_valid": self.fhir_valid,
                "findings": self.findings[:50]}


def _batch_entries(vault: Vault, batch_id: str, report: VerifyReport | None,
                   validator: Validator | None = None) -> Iterator[tuple[str, bytes]]:
    for r in vault.iter_rows("SELECT record_id, version, resource_hash, fingerprint, body, leaf "
                             "FROM records WHERE batch_id=? ORDER BY leaf", (batch_id,)):
        rid, ver = r["record_id"], r["version"]
        where = f"{rid} v{ver}"
        if report is not None:
            report.records += 1
            try:
                body = vault.record_body(rid, ver, r["body"])
            except GatewayError as exc:
                report.findings.append(f"{where}: {exc.message}")
                yield leaf_id(rid, ver), bytes.fromhex(r["fingerprint"])
                continue
            if hashlib.sha256(body).hexdigest() != r["fingerprint"]:
                report.findings.append(f"{where}: body does not hash to its fingerprint")
            env = orjson.loads(body)
            if hashlib.sha256(canonical(env["resource"])).hexdigest() != r["resource_hash"]:
                report.findings.append(f"{where}: resource hash differs")
            prov = env["provenance"]
            if (prov["record_id"], prov["version"]) != (rid, ver):
                report.findings.append(f"{where}: provenance names {prov['record_id']} "
                                       f"v{prov['version']}")
            leaks = pattern_leaks(body.decode())
            if leaks:
                report.findings.append(f"{where}: identifier pattern in output: {leaks}")
            if validator is not None:
                try:
                    validator.structure(env["resource"])
                    report.fhir_valid += 1
                except RowRejected as exc:
                    report.findings.append(f"{where}: not a valid R4B resource: {exc.detail}")
        yield leaf_id(rid, ver), bytes.fromhex(r["fingerprint"])


def verify(vault: Vault, anchorer: Anchorer | None = None, fhir: bool = False) -> VerifyReport:
    """Recompute everything; findings name the record or batch and what differs. With
    ``fhir``, also validate every resource with the fhir.resources R4B models."""
    rep = VerifyReport()
    validator = Validator(full=True) if fhir else None
    for b in vault.rows("SELECT batch_id, count, root, status FROM batches ORDER BY rowid"):
        rep.batches += 1
        batch = Batch(_batch_entries(vault, b["batch_id"], rep, validator))
        root = batch.root.hex()
        if batch.count != b["count"] or root != b["root"]:
            rep.findings.append(f"batch {b['batch_id']}: rebuilt root {root[:16]}… over "
                                f"{batch.count} leaves; stored {str(b['root'])[:16]}… over "
                                f"{b['count']}")
        if b["status"] != "anchored":
            rep.pending += 1
            continue
        rep.anchored += 1
        if anchorer is not None:
            on_ledger = anchorer.anchored_root(b["batch_id"])
            if on_ledger != root:
                rep.findings.append(f"batch {b['batch_id']}: ledger root "
                                    f"{(on_ledger or 'absent')[:16]}; rebuilt {root[:16]}")
    for batch_id, n in _unclosed(vault):
        rep.findings.append(f"batch {batch_id}: {n} records of an interrupted run were never "
                            "closed into a batch; `gateway anchor` closes and anchors it")
    return rep


def _unclosed(vault: Vault) -> list[tuple[str, int]]:
    """Batches that records name but the batches table lacks (a run stopped mid-batch)."""
    return [(r[0], r[1]) for r in vault.rows(
        "SELECT batch_id, count(*) FROM records WHERE batch_id IS NOT NULL AND batch_id NOT IN "
        "(SELECT batch_id FROM batches) GROUP BY batch_id ORDER BY min(rowid)")]


def anchor_pending(vault: Vault, anchorer: Anchorer) -> list[str]:
    """Anchor every batch still marked pending, after closing batches an interrupted run left
    open; returns their ids."""
    for batch_id, _ in _unclosed(vault):
        batch = Batch(_batch_entries(vault, batch_id, None))
        label = vault.rows("SELECT profile FROM records WHERE batch_id=? LIMIT 1", (batch_id,))
        body = vault.profile_body(str(label[0][0])) if label else None
        system = orjson.loads(body)["profile"]["source_system"] if body else "gateway"
        vault.db.execute("INSERT INTO batches VALUES (?, ?, ?, 'pending', NULL, NULL, ?)",
                         (batch_id, batch.count, batch.root.hex(), system))
    done = []
    for b in vault.rows("SELECT batch_id, source_system FROM batches WHERE status='pending' "
                        "ORDER BY rowid"):
        batch = Batch(_batch_entries(vault, b["batch_id"], None))
        got = anchorer.anchor(b["batch_id"], batch.root.hex(), batch.count, "FHIR",
                              b["source_system"] or "gateway", SCHEMA_VERSION)
        vault.db.execute("UPDATE batches SET status='anchored', tx_id=?, height=? "
                         "WHERE batch_id=?", (got["tx_id"], got["height"], b["batch_id"]))
        done.append(b["batch_id"])
    return done


def prove(vault: Vault, record_id: str, version: int | None = None) -> dict[str, Any]:
    """A record's Merkle inclusion proof into its anchored batch root."""
    row = vault.rows("SELECT version, batch_id, fingerprint FROM records WHERE record_id=? "
                     + ("AND version=?" if version else "") + " ORDER BY version DESC LIMIT 1",
                     (record_id, version) if version else (record_id,))
    if not row:
        raise GatewayError(f"no record {record_id} in the vault")
    r = row[0]
    batch = Batch(_batch_entries(vault, r["batch_id"], None))
    index, proof = batch.proof(leaf_id(record_id, r["version"]))
    return {"record_id": record_id, "version": r["version"], "batch_id": r["batch_id"],
            "fingerprint": r["fingerprint"], "leaf_index": index, "count": batch.count,
            "root": batch.root.hex(), "proof": [p.hex() for p in proof]}
