"""Where a holder's records come from: anything that lists a patient's records of some
categories, each with the batch proof that ties its fingerprint to an anchored root.

``MemorySource`` keeps records in memory (tests, demo, benchmark) and anchors them itself with
``registry.anchor_batch``. The fingerprint is SHA-256 of the record's exact bytes and the batch
leaf is ``(leaf_id(record_id, version), fingerprint)``, as the gateway anchors them
(``medledger.gateway.anchor``), so a vault-backed source can hand out the same proofs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from medledger.consent.model import ALL
from medledger.gateway.anchor import leaf_id
from medledger.records.batch import Batch


@dataclass(frozen=True)
class SharedRecord:
    """One record as released: its bytes and the proof of its anchored fingerprint."""

    record_id: str
    version: int
    category: str
    body: bytes
    fingerprint: str  # hex SHA-256 of body
    batch_id: str
    leaf_index: int
    count: int
    proof: list[bytes]


class RecordSource(Protocol):
    def records(self, patient: str, categories: Sequence[str]) -> list[SharedRecord]:
        """The current records of ``patient`` in ``categories`` (``all`` = every category)."""


@dataclass
class MemorySource:
    """Records held in memory, anchored as one batch by ``anchor_args``."""

    batch_id: str
    rows: list[tuple[str, str, str, bytes]] = field(default_factory=list)  # patient, cat, id, body
    _batch: Batch | None = None
    _by_patient: dict[str, list[SharedRecord]] = field(default_factory=dict)

    def add(self, patient: str, category: str, record_id: str, body: bytes) -> None:
        if self._batch is not None:
            raise ValueError("the batch is already built; add records before anchoring")
        self.rows.append((patient, category, record_id, body))

    def _build(self) -> Batch:
        if self._batch is None:
            self._batch = Batch((leaf_id(rid, 1), hashlib.sha256(body).digest())
                                for _, _, rid, body in self.rows)
            for patient, cat, rid, body in self.rows:
                i, proof = self._batch.proof(leaf_id(rid, 1))
                self._by_patient.setdefault(patient, []).append(SharedRecord(
                    rid, 1, cat, body, hashlib.sha256(body).hexdigest(), self.batch_id, i,
                    self._batch.count, proof))
        return self._batch

    def anchor_args(self, record_type: str = "Bundle") -> dict[str, Any]:
        """Arguments of the ``registry.anchor_batch`` transaction for these records."""
        batch = self._build()
        return {"batch_id": self.batch_id, "root": batch.root.hex(), "count": batch.count,
                "record_type": record_type, "source_system": "consent-demo",
                "schema_version": "fhir-r4:1"}

    def records(self, patient: str, categories: Sequence[str]) -> list[SharedRecord]:
        self._build()
        wanted = set(categories)
        return [r for r in self._by_patient.get(patient, [])
                if ALL in wanted or r.category in wanted]
