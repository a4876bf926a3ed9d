"""The consent demo: two hospitals exchange a patient's records for a referral; the patient
revokes; the next request is denied; the consent status before and after the revocation is
proven with the ledger's state proof; the access log shows all of it, every entry proven.

All people and records are synthetic. Riverside (hosp-a) ingests its exports from the gateway's
synthetic hospitals (``gateway.synth``) into its own gateway vault, de-identified and anchored
on the ledger. The patient is one of its synthetic persons: the desk knows them by resident ID,
the vault and the ledger only by the gateway's keyed consortium pseudonym
(``gateway.deid.Pseudonymizer``). Their current, anchored records leave the vault once
(``consent.vault_source.VaultSource``), HPKE-sealed to Lakeside (hosp-b), which checks every
record against its fingerprint in the batch hosp-a anchored.
"""

from __future__ import annotations

import secrets
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson

from medledger.client.light import LightClient
from medledger.consent.errors import ExchangeError
from medledger.consent.exchange import Holder, LedgerMember, Received, Requester
from medledger.consent.log import patient_log, verify_item
from medledger.consent.sources import SharedRecord
from medledger.consent.status import status_doc, verify_status
from medledger.consent.vault_source import VaultSource
from medledger.demo.ledger import DemoResult
from medledger.gateway import service
from medledger.gateway.deid import Pseudonymizer, PseudonymKey
from medledger.gateway.identifiers import normalise_rid
from medledger.gateway.synth import Generator, generate
from medledger.gateway.vault import Vault
from medledger.installed import default_registry
from medledger.ledger.verify import verify_store
from medledger.node.node import Node
from medledger.workspace import DEFAULT_ORGS, Workspace

ORGS = [*DEFAULT_ORGS, ("patients", "MedLedger Patient App", "patient-app")]
MEMBERS = [("hosp-a/gw", "gateway"), ("hosp-a/steward", "data-steward"),
           ("hosp-a/auditor", "auditor"), ("hosp-b/gw", "gateway"), ("hosp-b/dr-wu", "physician"),
           ("insurer/claims", "gateway"), ("patients/agent-0001", "patient-agent")]
DAY = 86_400_000
HOLDER = "hosp-a"
REFERRAL = ["labs", "conditions"]
# the synthetic hospitals, small: hosp-a's exports are ~400 records of ~60 patients
SEED, PERSONS, ROWS = 2026, 60, 120


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def ingest(ws: Workspace, node: Node, root: Path, key: PseudonymKey) -> tuple[Vault, str]:
    """hosp-a's gateway ingests its synthetic exports (diagnoses, labs, HL7 v2) into its vault
    and anchors the batches on the ledger as ``hosp-a/gw``; returns the vault and the run id."""
    names = generate(root / "exports", seed=SEED, persons=PERSONS, rows=ROWS)
    files = [root / "exports" / n for n in names if n.startswith(f"{HOLDER}/")]
    vault = Vault(root / "vault-hosp-a")
    with service.ledger(ws.root, HOLDER, f"{HOLDER}/gw", node=node) as anchorer:
        run_id, _ = service.ingest_export_dir(vault, key, files, HOLDER, anchorer)
    return vault, run_id


def pick_patient(source: VaultSource, key: PseudonymKey) -> tuple[str, str, list[SharedRecord]]:
    """The synthetic person seen at hosp-a with the most anchored labs and conditions: their
    resident ID, its keyed pseudonym (what the gateway wrote into the vault) and those records."""
    pseudo = Pseudonymizer(key)
    best: tuple[str, str, list[SharedRecord]] | None = None
    for person in sorted(Generator(SEED, PERSONS, ROWS).seen[HOLDER], key=lambda p: p.pid):
        rid = normalise_rid(person.rid)
        records = source.records(pseudo.pseudonym("cn-rid", rid), REFERRAL)
        kinds = {r.category for r in records}
        if kinds == set(REFERRAL) and (best is None or len(records) > len(best[2])):
            best = (rid, pseudo.pseudonym("cn-rid", rid), records)
    if best is None:  # pragma: no cover - the seeded exports always have such a person
        raise RuntimeError("no synthetic patient of hosp-a has both labs and conditions")
    return best


def describe(got: list[Received]) -> str:
    """``7 labs, 3 conditions (ICD-10 I10, E11.9, …)`` from the decrypted FHIR envelopes."""
    kinds = Counter(r.category for r in got)
    codes = []
    for r in got:
        res = orjson.loads(r.body)["resource"]
        if res["resourceType"] == "Condition":
            codes.append(res["code"]["coding"][0]["code"])
    return (", ".join(f"{n} {c}" for c, n in sorted(kinds.items())) +
            f" (ICD-10 {', '.join(sorted(set(codes)))})")


class _Scenario:
    def __init__(self, ws: Workspace, node: Node, root: Path) -> None:
        self.ws, self.node, self.root, self.out = ws, node, root, DemoResult()
        self.ring = ws.keyring()
        self.patient = ""

    def member(self, mid: str) -> LedgerMember:
        return LedgerMember(self.node, mid, self.ring.signing[mid], now_ms)

    def ok(self, mid: str, contract: str, method: str, args: dict[str, Any]) -> None:
        r = self.member(mid).call(contract, method, args)
        if not r.ok:
            raise RuntimeError(f"{contract}.{method} by {mid}: {r.code}: {r.message}")

    def _vault(self, vault: Vault, key: PseudonymKey) -> list[SharedRecord]:
        """The vault's contents, the chosen patient and the anchors of their records."""
        n, subjects = vault.rows("SELECT count(*), count(DISTINCT subject) FROM records")[0]
        batches = [b for (b,) in vault.rows("SELECT batch_id FROM batches "
                                            "WHERE status = 'anchored' ORDER BY batch_id")]
        self.out.add("gateway vault (hosp-a)", f"{n} FHIR records of {subjects} synthetic "
                     f"patients, de-identified, in {len(batches)} batch"
                     f"{'es' * (len(batches) != 1)} anchored by hosp-a/gw")
        rid, self.patient, records = pick_patient(VaultSource(vault), key)
        self.out.add("patient at the desk", f"resident ID {rid[:6]}…{rid[-4:]} (synthetic) → "
                     "the gateway's keyed pseudonym")
        self.out.add("patient (pseudonym)", self.patient)
        anchors = {r.batch_id: self.member("hosp-b/gw").state(
            f"registry/batch/{HOLDER}/{r.batch_id}") for r in records}
        self.out.add("their records in the vault", f"{len(records)} current labs and "
                     "conditions in batch " + ", ".join(
                         f"{b} (anchored at h{a['height']})" for b, a in anchors.items()
                         if a is not None))
        self.out.ok &= all(a is not None for a in anchors.values())
        return records

    def run(self) -> DemoResult:
        key = PseudonymKey("k1", secrets.token_bytes(32))
        vault, _ = ingest(self.ws, self.node, self.root, key)
        with vault:
            return self._run(vault, self._vault(vault, key))

    def _run(self, vault: Vault, expected: list[SharedRecord]) -> DemoResult:
        out, p = self.out, self.patient
        self.ok("hosp-a/steward", "consent", "link_agent",
                {"patient": p, "member": "patients/agent-0001"})
        t = now_ms()
        self.ok("patients/agent-0001", "consent", "grant", {
            "consent_id": "referral-0001", "patient": p, "purpose": "referral",
            "categories": REFERRAL, "recipient_org": "hosp-b", "start": t - 1000,
            "end": t + 30 * DAY})
        out.add("consent", "patient's app grants referral to hosp-b: labs, conditions, 30 days")
        holder = Holder(self.member("hosp-a/gw"), VaultSource(vault))
        dr = Requester(self.member("hosp-b/dr-wu"), self.ring.agreement["hosp-b"].secret)
        signed = dr.request(HOLDER, p, REFERRAL, "referral")
        got = dr.accept(signed, holder.handle(signed))
        out.add("referral exchange", f"granted: {len(got)} records from hosp-a's vault "
                f"decrypted by hosp-b — {describe(got)} — each matching its fingerprint in "
                "the batch anchored on the ledger")
        out.ok &= sorted((r.record_id, r.version) for r in got) == sorted(
            (r.record_id, r.version) for r in expected)
        out.ok &= all(orjson.loads(r.body)["resource"].get("subject", {}).get("reference")
                      == f"Patient/{p}" for r in got)
        self._expect_denied(holder, dr.request(HOLDER, p, ["labs"], "research"),
                            "hosp-b asks for research", "wrong_purpose")
        insurer = Requester(self.member("insurer/claims"), self.ring.agreement["insurer"].secret)
        self._expect_denied(holder, insurer.request(HOLDER, p, ["labs"], "referral"),
                            "insurer asks", "wrong_recipient")
        self._expect_denied(holder, signed, "hosp-b replays its request", "replayed_request")
        granted_at = self.node.height
        self.ok("patients/agent-0001", "consent", "revoke",
                {"consent_id": "referral-0001", "reason": "referral finished"})
        out.add("revocation", f"patient's app revokes at height {self.node.height}")
        self._expect_denied(holder, dr.request(HOLDER, p, ["labs"], "referral"),
                            "next request", "consent_revoked")
        self._status(granted_at, "active")
        self._status(self.node.height, "revoked")
        self._expect_denied(holder, dr.request(HOLDER, p, ["labs"], "treatment", "", 30),
                            "break-glass without justification", "justification_required")
        bg = dr.request(HOLDER, p, ["labs"], "treatment",
                        "patient unconscious in A&E, suspected hypoglycaemia", 30)
        got = dr.accept(bg, holder.handle(bg))
        out.add("break-glass", f"granted for 30 min: {len(got)} labs from the vault; flagged "
                "for hosp-a's auditor")
        out.ok &= len(got) == sum(r.category == "labs" for r in expected)
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
            flag = ", break-glass" if e["break_glass"] else ""
            if item.get("review"):
                flag += f" (review: {item['review']['status']})"
            self.out.add(f"  log h{e['height']}", f"{e['requester']} {e['purpose']} "
                         f"{'+'.join(e['categories'])}: {e['outcome']} ({e['reason']}){flag} "
                         f"— proven in checkpoint {size}")
        self.out.add("access log", f"{len(items)} entries, every one proven by the light client")


def run(workdir: Path | None = None) -> DemoResult:
    """Run the scenario in a throwaway (or the given) workspace and verify the chain."""
    with tempfile.TemporaryDirectory(prefix="medledger-consent-") as tmp:
        root = workdir or Path(tmp)
        ws = Workspace.init(root / "consortium", "demo-consent", ORGS, MEMBERS)
        with ws.node(max_wait=0.002) as node:
            out = _Scenario(ws, node, root).run()
        report = verify_store(ws.store(), default_registry())
        out.add("full verify", f"{'OK' if report.ok else 'FAILED'}: {report.blocks} blocks, "
                f"{report.txs} txs in {report.seconds:.2f} s")
        out.ok &= report.ok
        return out


