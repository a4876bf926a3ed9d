"""The ledger-core demo: a throwaway consortium, a realistic workload, proofs and a full verify.

Every figure printed is read back from the ledger; nothing is hard-coded. Later capabilities add
their own scenario modules next to this one.
"""

from __future__ import annotations

import hashlib
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from medledger.client.client import Client
from medledger.client.light import LightClient
from medledger.crypto.keys import SigningKey, b64
from medledger.errors import RejectedError
from medledger.installed import default_registry
from medledger.ledger.verify import verify_store
from medledger.node.node import Node
from medledger.records.batch import Batch, verify_in_batch
from medledger.workspace import DEFAULT_ORGS, Workspace


@dataclass
class DemoResult:
    lines: list[tuple[str, str]] = field(default_factory=list)
    ok: bool = True

    def add(self, what: str, value: Any) -> None:
        self.lines.append((what, str(value)))


def _fingerprint(*parts: str) -> str:
    return hashlib.sha256("|".join(parts).encode()).hexdigest()


class _Scenario:
    def __init__(self, ws: Workspace, node: Node, records_per_hospital: int) -> None:
        self.ws, self.node, self.n = ws, node, records_per_hospital
        self.ring = ws.keyring()
        self.chain = node.chain_id
        self.clients: dict[str, Client] = {}
        self.out = DemoResult()

    def client(self, member: str) -> Client:
        if member not in self.clients:
            self.clients[member] = Client(self.node, self.chain, member, self.ring.signing[member])
        return self.clients[member]

    def enroll(self, member: str, role: str) -> None:
        key = SigningKey.generate()
        self.ring.signing[member] = key
        org = member.split("/")[0]
        r = self.client(f"{org}/root").call("consortium", "enroll", {
            "member": member, "role": role, "public_key": b64(key.public)})
        assert r.ok, r

    def run(self) -> DemoResult:
        t0 = time.perf_counter()
        staff = {
            "hosp-a": [("gateway", "gateway"), ("steward", "data-steward"), ("dr-li", "physician")],
            "hosp-b": [("gateway", "gateway"), ("steward", "data-steward"), ("dr-wu", "physician")],
            "hosp-c": [("gateway", "gateway"), ("steward", "data-steward")],
            "cdc": [("analyst", "auditor")], "research": [("dr-chen", "researcher")],
            "pharmacy": [("pharmacist", "pharmacist")], "insurer": [("claims", "auditor")],
        }
        for org, people in staff.items():
            for name, role in people:
                self.enroll(f"{org}/{name}", role)
        self.out.add("organisations", ", ".join(o for o, _, _ in DEFAULT_ORGS))
        self.out.add("members enrolled", sum(len(p) for p in staff.values()))
        self._records()
        self._batch()
        self._governance()
        self._bad_input()
        self._proofs()
        self.out.add("workload time", f"{time.perf_counter() - t0:.2f} s")
        return self.out

    def _records(self) -> None:
        futures = []
        for org in ("hosp-a", "hosp-b", "hosp-c"):
            gw = self.client(f"{org}/gateway")
            for i in range(self.n):
                rid = f"enc-{org}-{i:05d}"
                args = {"record_id": rid, "record_type": "Encounter", "source_system": "HIS-v3",
                        "content_hash": _fingerprint(org, rid, "v1"), "schema_version": "fhir-r4/1"}
                futures.append(self.node.submit(gw.build("registry", "register", args)))
        receipts = [f.result(60) for f in futures]
        gw = self.client("hosp-a/gateway")
        amended = gw.call("registry", "amend", {
            "record_id": "enc-hosp-a-00001", "content_hash": _fingerprint("corrected"),
            "schema_version": "fhir-r4/2", "reason": "lab unit corrected"})
        retracted = gw.call("registry", "retract", {
            "record_id": "enc-hosp-a-00002", "reason": "registered twice in the HIS"})
        steward_a = self.client("hosp-a/steward")
        moved = steward_a.call(
            "registry", "transfer", {"record_id": "enc-hosp-a-00003", "to_org": "hosp-b"},
            cosigners={"hosp-b/steward": self.ring.signing["hosp-b/steward"]})
        unsigned = steward_a.call(
            "registry", "transfer", {"record_id": "enc-hosp-a-00004", "to_org": "hosp-b"})
        dup = gw.call("registry", "register", {
            "record_id": "enc-hosp-a-00005", "record_type": "Encounter", "source_system": "HIS-v3",
            "content_hash": _fingerprint("x"), "schema_version": "fhir-r4/1"})
        ok = sum(r.ok for r in receipts)
        self.out.add("records registered", f"{ok} of {len(receipts)} (3 hospitals)")
        self.out.add("amend / retract", f"{amended.code} (version {amended.value['version']}) / "
                     f"{retracted.code}")
        self.out.add("custody transfer A→B", f"{moved.code} with both signatures; "
                     f"{unsigned.code} without hosp-b's")
        self.out.add("duplicate registration", f"kept in block {dup.height}, marked {dup.code}")
        self.out.ok &= ok == len(receipts) and moved.ok and unsigned.code == "missing_cosignature"

    def _batch(self) -> None:
        entries = [(f"lab-{i:06d}", hashlib.sha256(f"lab result {i}".encode()).digest())
                   for i in range(10_000)]
        batch = Batch(entries)
        r = self.client("hosp-b/gateway").call("registry", "anchor_batch", {
            "batch_id": "labs-2026-11-27", "root": batch.root.hex(), "count": batch.count,
            "record_type": "Observation", "source_system": "LIS-2", "schema_version": "fhir-r4/1"})
        index, proof = batch.proof("lab-004242")
        verify_in_batch("lab-004242", entries[4242][1], index, batch.count, proof, batch.root)
        self.out.add("batch anchor", f"{batch.count:,} lab fingerprints in one tx ({r.code}); "
                     f"record lab-004242 proven with {len(proof)} hashes")

    def _governance(self) -> None:
        new_org = {"id": "clinic-east", "name": "East District Community Clinic", "kind": "clinic",
                   "sign_key": b64(SigningKey.generate().public),
                   "kex_key": b64(SigningKey.generate().public)}
        at = self.node.height + 8
        self.client("hosp-a/root").call("consortium", "propose", {
            "proposal": "add-clinic-east", "action": "add_org", "payload": new_org,
            "effective_height": at})
        votes = []
        for org in ("hosp-b", "hosp-c", "cdc", "research"):
            votes.append(self.client(f"{org}/root").call(
                "consortium", "approve", {"proposal": "add-clinic-east"}))
        scheduled = self.node.store.get_state("consortium/proposal/add-clinic-east")
        at = orjson.loads(scheduled or b"{}").get("scheduled_height") or at
        while self.node.height < at:  # let the chain reach the scheduled height
            self.client("cdc/analyst").call("registry", "anchor_batch", {
                "batch_id": f"tick-{self.node.height}", "root": "00" * 32, "count": 1,
                "record_type": "Heartbeat", "source_system": "demo", "schema_version": "1"})
        status = self.node.store.get_state("consortium/org/clinic-east")
        self.out.add("governance", f"add clinic-east: approvals {votes[-1].value['approvals']}/"
                     f"{len(DEFAULT_ORGS)} (needed {votes[-1].value['needed']}), "
                     f"active from height {at}: {'yes' if status else 'no'}")
        self.out.ok &= status is not None

    def _bad_input(self) -> None:
        gw = self.client("hosp-c/gateway")
        raw = gw.build("registry", "register", {
            "record_id": "enc-replay", "record_type": "Encounter", "source_system": "HIS-v3",
            "content_hash": _fingerprint("r"), "schema_version": "fhir-r4/1"})
        first = self.node.submit(raw).result(30)
        again = self.node.submit(raw).result(30)
        self.client("hosp-c/root").call("consortium", "revoke_member",
                                        {"member": "hosp-c/gateway", "reason": "device lost"})
        codes = []
        for bad in (b'{"not": "canonical" }', raw.replace(b'"chain":"', b'"chain":"x')):
            try:
                self.node.submit(bad).result(30)
            except RejectedError as exc:
                codes.append(str(exc.code))
        try:
            gw.call("registry", "retract", {"record_id": "enc-replay", "reason": "test"})
        except RejectedError as exc:
            codes.append(str(exc.code))
        self.out.add("resubmitted tx", f"same receipt (block {again.height}, index {again.index})"
                     if again == first else "DIFFERENT receipt")
        self.out.add("refused at ingress", ", ".join(codes))
        self.out.ok &= again == first and codes == ["non_canonical", "wrong_chain",
                                                    "member_revoked"]

    def _proofs(self) -> None:
        store, node = self.node.store, self.node
        latest = store.checkpoint()
        early = store.checkpoints()[2]
        assert latest is not None
        size, _, note = latest
        genesis = node.genesis
        light = LightClient(genesis.chain_id, genesis.org_keys())
        rec = store.txs_range(size // 2, size // 2 + 1)[0]
        proof = node.inclusion_proof(rec.index, size)
        cp = light.verify_inclusion(rec.raw, rec.height, orjson.loads(rec.result), rec.index,
                                    proof, note)
        self.out.add("blocks / transactions", f"{node.height} / {node.head.log_size}")
        self.out.add("inclusion proof", f"tx {rec.tx_id.hex()[:16]}… at index {rec.index} in a "
                     f"log of {cp.size}: {len(proof)} hashes, verified by the light client")
        cons = node.consistency_proof(early[0], size)
        light.verify_consistency(early[2], note, cons)
        self.out.add("consistency proof", f"log {early[0]} → {size}: {len(cons)} hashes, "
                     "verified by the light client")


def run(records_per_hospital: int = 400, workdir: Path | None = None) -> DemoResult:
    """Run the scenario in a throwaway workspace and verify the resulting chain."""
    with tempfile.TemporaryDirectory(prefix="medledger-demo-") as tmp:
        root = workdir or Path(tmp)
        ws = Workspace.init(root / "consortium", "demo-consortium")
        with ws.node(max_block_txs=500, max_wait=0.01) as node:
            out = _Scenario(ws, node, records_per_hospital).run()
        report = verify_store(ws.store(), default_registry())
        out.add("full verify", f"{'OK' if report.ok else 'FAILED'}: {report.blocks} blocks, "
                f"{report.txs} txs, {report.checkpoints} checkpoints in {report.seconds:.2f} s")
        out.ok &= report.ok
        return out
