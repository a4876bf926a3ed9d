"""The consent demo: two hospitals exchange a patient's records for a referral; the patient
revokes; the next request is denied; the consent status before and after the revocation is
proven with the ledger's state proof; the access log shows all of it, every entry proven.

All people and records are synthetic. The patient is known on the ledger only by the keyed
consortium pseudonym (``medledger.gateway.deid``); records stay at Riverside (hosp-a), whose
gateway anchored their fingerprints, and travel once, HPKE-sealed to Lakeside (hosp-b).
"""

from __future__ import annotations

import secrets
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from medledger.client.light import LightClient
from medledger.consent.errors import ExchangeError
from medledger.consent.exchange import Holder, LedgerMember, Requester
from medledger.consent.log import patient_log, verify_item
from medledger.consent.sources import MemorySource
from medledger.consent.status import status_doc, verify_status
from medledger.demo.ledger import DemoResult
from medledger.gateway.deid import Pseudonymizer, PseudonymKey
from medledger.installed import default_registry
from medledger.ledger.verify import verify_store
from medledger.node.node import Node
from medledger.workspace import DEFAULT_ORGS, Workspace

ORGS = [*DEFAULT_ORGS, ("patients", "MedLedger Patient App", "patient-app")]
MEMBERS = [("hosp-a/gw", "gateway"), ("hosp-a/steward", "data-steward"),
           ("hosp-a/auditor", "auditor"), ("hosp-b/gw", "gateway"), ("hosp-b/dr-wu", "physician"),
           ("insurer/claims", "gateway"), ("patients/agent-0001", "patient-agent")]
DAY = 86_400_000


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def synthetic_records(source: MemorySource, patient: str, n_labs: int = 12) -> None:
    """FHIR-shaped synthetic resources of one patient (labs and one condition)."""
    for i in range(n_labs):
        obs = {"resourceType": "Observation", "id": f"obs-{i}", "status": "final",
               "subject": {"reference": f"Patient/{patient}"},
               "code": {"coding": [{"system": "http://loinc.org", "code": "2345-7"}]},
               "valueQuantity": {"value": 90 + i, "unit": "mg/dL"}}
        source.add(patient, "labs", f"obs-{i}", orjson.dumps(obs))
    cond = {"resourceType": "Condition", "id": "cond-0",
            "subject": {"reference": f"Patient/{patient}"},
            "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "E11.9"}]}}
    source.add(patient, "conditions", "cond-0", orjson.dumps(cond))


class _Scenario:
    def __init__(self, ws: Workspace, node: Node) -> None:
        self.ws, self.node, self.out = ws, node, DemoResult()
        self.ring = ws.keyring()
        key = PseudonymKey("k1", secrets.token_bytes(32))
        self.patient = Pseudonymizer(key).pseudonym("cn-rid", "DEMO-PATIENT-0001")

    def member(self, mid: str) -> LedgerMember:
        return LedgerMember(self.node, mid, self.ring.signing[mid], now_ms)

    def ok(self, mid: str, contract: str, method: str, args: dict[str, Any]) -> None:
        r = self.member(mid).call(contract, method, args)
        if not r.ok:
            raise RuntimeError(f"{contract}.{method} by {mid}: {r.code}: {r.message}")

    def run(self) -> DemoResult:
        out, p = self.out, self.patient
        source = MemorySource("riverside-2025-11")
        synthetic_records(source, p)
        self.ok("hosp-a/gw", "registry", "anchor_batch", source.anchor_args())
        out.add("patient (pseudonym)", p)
        out.add("records anchored by hosp-a", f"{len(source.rows)} (batch {source.batch_id})")
        self.ok("hosp-a/steward", "consent", "link_agent",
                {"patient": p, "member": "patients/agent-0001"})
        t = now_ms()
        self.ok("patients/agent-0001", "consent", "grant", {
            "consent_id": "referral-0001", "patient": p, "purpose": "referral",
            "categories": ["labs", "conditions"], "recipient_org": "hosp-b", "start": t - 1000,
            "end": t + 30 * DAY})
        out.add("consent", "patient's app grants referral to hosp-b: labs, conditions, 30 days")
        holder = Holder(self.member("hosp-a/gw"), source)
        dr = Requester(self.member("hosp-b/dr-wu"), self.ring.agreement["hosp-b"].secret)
        signed = dr.request("hosp-a", p, ["labs", "conditions"], "referral")
        got = dr.accept(signed, holder.handle(signed))
        out.add("referral exchange", f"granted: {len(got)} records decrypted by hosp-b, each "
                "matching its anchored fingerprint")
        out.ok &= len(got) == len(source.rows)
        self._expect_denied(holder, dr.request("hosp-a", p, ["labs"], "research"),
                            "hosp-b asks for research", "wrong_purpose")
        insurer = Requester(self.member("insurer/claims"), self.ring.agreement["insurer"].secret)
        self._expect_denied(holder, insurer.request("hosp-a", p, ["labs"], "referral"),
                            "insurer asks", "wrong_recipient")
        self._expect_denied(holder, signed, "hosp-b replays its request", "replayed_request")
        granted_at = self.node.height
        self.ok("patients/agent-0001", "consent", "revoke",
                {"consent_id": "referral-0001", "reason": "referral finished"})
        out.add("revocation", f"patient's app revokes at height {self.node.height}")
        self._expect_denied(holder, dr.request("hosp-a", p, ["labs"], "referral"),
                            "next request", "consent_revoked")
        self._status(granted_at, "active")
        self._status(self.node.height, "revoked")
        self._expect_denied(holder, dr.request("hosp-a", p, ["labs"], "treatment", "", 30),
                            "break-glass without justification", "justification_required")
        bg = dr.request("hosp-a", p, ["labs"], "treatment",
                        "patient unconscious in A&E, suspected hypoglycaemia", 30)
        got = dr.accept(bg, holder.handle(bg))
        out.add("break-glass", f"granted for 30 min: {len(got)} records; flagged for hosp-a's "
                "auditor")
        self._log()
        return out

    def _status(self, height: int, want: str) -> None:
        """The consent status at ``height`` with its state proof, checked by the light client:
        the index's last write at or below that height and no change in any block since."""
        light = LightClient(self.node.chain_id, self.node.genesis.org_keys())
        doc = status_doc(self.node.store, self.patient, height, prove=True)
        consents, fact = verify_status(light, self.patient, doc["proof"], height)
        got = consents.get("referral-0001", {}).get("status")
        since = height - (fact.written or 0)
        self.out.add(f"status at h{height}", f"referral-0001 {got} — proven: index written at "
                     f"h{fact.written}, unchanged in the {since} block{'s' * (since != 1)} "
                     f"after it; {fact.blocks} headers up to checkpoint {fact.checkpoint.size}")
        self.out.ok &= got == want and consents == doc["consents"]

    def _expect_denied(self, holder: Holder, signed: dict[str, Any], what: str,
                       want: str) -> None:
        try:
            holder.handle(signed)
        except ExchangeError as exc:
            self.out.add(what, f"denied: {exc.reason} (entry {exc.entry and exc.entry[-12:]})")
            self.out.ok &= exc.reason.value == want
            return
        self.out.add(what, "GRANTED — expected a denial")
        self.out.ok = False

    def _log(self) -> None:
        light = LightClient(self.node.chain_id, self.node.genesis.org_keys())
        items = patient_log(self.node.store, self.patient)
        flagged = [i for i in items if i["entry"]["break_glass"] and
                   i["entry"]["outcome"] == "granted"]
        for item in flagged:  # the auditor's review also moves the log past a checkpoint
            self.ok("hosp-a/auditor", "access", "review",
                    {"entry": item["key"], "decision": "justified", "note": "A&E record seen"})
        items = patient_log(self.node.store, self.patient)
        for item in items:
            e = item["entry"]
            size = verify_item(light, item)
            self.out.add(f"  log h{e['height']}", f"{e['requester']} {e['purpose']} "
                         f"{'+'.join(e['categories'])}: {e['outcome']} ({e['reason']})"
                         f"{', break-glass' if e['break_glass'] else ''} — proven in "
                         f"checkpoint {size}")
        self.out.add("access log", f"{len(items)} entries, every one proven by the light client")


def run(workdir: Path | None = None) -> DemoResult:
    """Run the scenario in a throwaway (or the given) workspace and verify the chain."""
    with tempfile.TemporaryDirectory(prefix="medledger-consent-") as tmp:
        root = workdir or Path(tmp)
        ws = Workspace.init(root / "consortium", "demo-consent", ORGS, MEMBERS)
        with ws.node(max_wait=0.002) as node:
            out = _Scenario(ws, node).run()
        report = verify_store(ws.store(), default_registry())
        out.add("full verify", f"{'OK' if report.ok else 'FAILED'}: {report.blocks} blocks, "
                f"{report.txs} txs in {report.seconds:.2f} s")
        out.ok &= report.ok
        return out


