"""Case-report drafts from a hospital's gateway run, kept sealed in the hospital (ADR 0037).

Inside the hospital, after ``medledger gateway ingest`` has stored a run:

1. ``draft_run(vault, key, run_id, files, rules)`` asks the gateway for the identified side of
   the run (``gateway.identified``): the rows the run emitted whose code a rule can use
   (notifiable ICD-10 diagnoses; the lab rules' LOINC codes), re-read from the source files,
   as identified FHIR resources with true dates. The drafting rules (``drafting``) run on them
   one row at a time; a person's drafts of one disease are grouped into episodes with the
   catalog's ``episode_days`` (once per person when null) and each episode becomes one draft —
   earliest diagnosis date, district from the address (``DistrictTable``), age band from the
   full birth date at diagnosis, sex, lab status.
2. The patient's report pseudonym is ``casefile.patient_pseudonym`` over the *gateway's*
   consortium pseudonym (``k1-…``, same key, system ``GATEWAY_PSEUDONYM``) and the disease.
   Every hospital holding the consortium key computes the gateway pseudonym of a person with a
   resident ID identically, so its reports of that person and disease carry the same report
   pseudonym and the ledger links them (one case, not two); a per-disease HMAC on top keeps
   ADR 0021's rule that one person's reports of two diseases do not link on the ledger, and
   keeps ledger rows from being joined to the vault's shareable exports, which carry the gateway
   pseudonym itself.
3. Drafts are stored in the vault's database (table ``surveillance_drafts``): id, organisation,
   run, disease, report pseudonym and status in clear (the vault already holds codes and
   pseudonyms in clear), everything else — identified details, dates, sources, the salt —
   sealed with AES-256-GCM under the vault key (associated data ``surveillance-draft|<id>``). An
   episode already covered by a stored draft of the same person and disease (open, confirmed
   or discarded) is not drafted again, so re-running is idempotent.
4. A physician confirms: ``submit_args`` seals the identified details and the physician's
   signature to the CDC (``casefile.seal_report``, HPKE) and gives the ``case_reports.submit``
   arguments; ``record_args`` gives the ledger ``draft`` (salted digest and rule only). Only the
   submission leaves the hospital, and only its payload carries identity — encrypted for the
   CDC alone.

The draft id is random and doubles as the ledger report id (a derived id would let anyone link
a recorded draft to the person's later reports). Exports carry one event date per row, so
drafts have no onset date; the physician may add one on confirmation.
"""

from __future__ import annotations

import os
import re
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import Any

import orjson

from medledger.crypto import canonical
from medledger.crypto.keys import SigningKey
from medledger.errors import Code
from medledger.gateway.deid import PseudonymKey
from medledger.gateway.identified import IdentifiedRecord, Unread, identified_records
from medledger.gateway.vault import Vault
from medledger.surveillance.casefile import CaseFields, ReportError, patient_pseudonym, seal_report
from medledger.surveillance.diseases import Catalog
from medledger.surveillance.drafting import Draft, DraftContext, RuleSet, Skipped, draft_reports

__all__ = [
    "GATEWAY_PSEUDONYM", "DistrictTable", "DraftStore", "GatewayDraft", "GatewayRules",
    "RunDrafts", "draft_run", "record_args", "submit_args",
]

GATEWAY_PSEUDONYM = "urn:medledger:gateway-pseudonym"
LOINC = "http://loinc.org"
DISTRICT = re.compile(r"^[A-Za-z0-9-]{1,16}\Z")
STATUSES = ("open", "confirmed", "discarded")

SCHEMA = """
CREATE TABLE IF NOT EXISTS surveillance_drafts (
  draft_id TEXT PRIMARY KEY, org TEXT NOT NULL, run_id TEXT NOT NULL, disease TEXT NOT NULL,
  patient TEXT NOT NULL, status TEXT NOT NULL, created_ms INTEGER NOT NULL,
  updated_ms INTEGER NOT NULL, recorded_tx TEXT, submitted_tx TEXT, note TEXT NOT NULL,
  body BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS surveillance_drafts_patient ON surveillance_drafts(disease, patient);
"""


@dataclass(frozen=True)
class DistrictTable:
    """Address text → district code: ``(needle, district)`` pairs, case-insensitive substring
    match over the address's text, lines, city, district and state; the first match wins.
    A hospital lists its catchment here (production: a geocoder or a structured residence
    code would replace it)."""

    entries: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        for needle, district in self.entries:
            if not needle.strip() or not DISTRICT.match(district):
                raise ValueError(f"district entry {[needle, district]}: want a non-empty "
                                 "address fragment and a code of 1-16 [A-Za-z0-9-]")

    def district_of(self, patient: Mapping[str, Any]) -> str | None:
        for address in patient.get("address") or []:
            if not isinstance(address, Mapping):
                continue
            parts = [address.get(k) for k in ("text", "city", "district", "state")]
            parts += list(address.get("line") or [])
            text = " ".join(str(p) for p in parts if p).casefold()
            for needle, district in self.entries:
                if needle.casefold() in text:
                    return district
        return None


@dataclass(frozen=True)
class GatewayRules:
    """Drafting rules plus the district table, from one JSON document: ``{"lab": [...],
    "diagnosis": [...], "districts": [[address fragment, district code], ...]}``."""

    rules: RuleSet
    districts: DistrictTable = field(default_factory=DistrictTable)

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> GatewayRules:
        """Raises ValueError with the reason."""
        if not isinstance(doc, Mapping):
            raise ValueError("rules document must be a JSON object")
        entries = doc.get("districts", [])
        if not isinstance(entries, list) or not all(
                isinstance(e, list) and len(e) == 2 and all(isinstance(x, str) for x in e)
                for e in entries):
            raise ValueError("districts must be a list of [address fragment, district code]")
        return cls(RuleSet.from_doc(doc), DistrictTable(tuple((a, b) for a, b in entries)))

    def wants(self, catalog: Catalog) -> Callable[[str, str], bool]:
        """Which gateway outcomes (code system, code) a rule could draft from."""
        lab_codes = {c for r in self.rules.lab for s, c in r.codes if s == LOINC}

        def want(system: str, code: str) -> bool:
            if system == "loinc":
                return code in lab_codes
            if system != "icd10" or not code or catalog.match(code) is None:
                return False
            key = code.replace(".", "")
            return any(not r.prefixes or any(key.startswith(p.replace(".", ""))
                                             for p in r.prefixes)
                       for r in self.rules.diagnosis)
        return want


@dataclass(frozen=True)
class GatewayDraft:
    """A draft case report held at the hospital. ``draft`` is identified: never show it
    outside the hospital; ``summary()`` is the pseudonymous view."""

    id: str                     # also the report id on the ledger
    org: str
    run_id: str
    status: str                 # open | confirmed | discarded
    patient: str                # the report pseudonym the ledger will carry
    draft: Draft
    records: tuple[tuple[str, str, str], ...]   # (source name, position, vault record id)
    salt: bytes
    created_ms: int = 0
    recorded_tx: str | None = None
    submitted_tx: str | None = None
    note: str = ""

    @property
    def digest(self) -> str:
        return self.draft.digest(self.salt)

    def summary(self) -> dict[str, Any]:
        return {"id": self.id, "org": self.org, "run": self.run_id, "status": self.status,
                "disease": self.draft.disease, "fields": self.draft.fields.to_args(),
                "rules": list(self.draft.rules), "patient": self.patient,
                "records": [f"{n}#{p}" for n, p, _ in self.records],
                "recorded_tx": self.recorded_tx, "submitted_tx": self.submitted_tx,
                "note": self.note}

    def _body(self) -> dict[str, Any]:
        d = self.draft
        return {"v": 1, "rules": list(d.rules), "disease": d.disease,
                "fields": d.fields.to_args(), "patient_ref": d.patient_ref,
                "patient_id": list(d.patient_id), "patient_details": d.patient_details,
                "sources": list(d.sources), "records": [list(r) for r in self.records],
                "salt": self.salt.hex()}


class DraftStore:
    """The hospital's drafts, in the vault's database, sealed under the vault key."""

    def __init__(self, vault: Vault) -> None:
        self.vault = vault
        vault.db.executescript(SCHEMA)

    def _aad(self, draft_id: str) -> bytes:
        return f"surveillance-draft|{draft_id}".encode()

    def add(self, drafts: Sequence[GatewayDraft]) -> None:
        db = self.vault.db
        db.execute("BEGIN")
        try:
            for d in drafts:
                sealed = self.vault.sealer.seal(canonical.encode(d._body()), self._aad(d.id))
                db.execute("INSERT INTO surveillance_drafts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, "
                           "?, ?, ?)", (d.id, d.org, d.run_id, d.draft.disease, d.patient,
                                        d.status, d.created_ms, d.created_ms, d.recorded_tx,
                                        d.submitted_tx, d.note, sealed))
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def _load(self, row: Any) -> GatewayDraft:
        body = orjson.loads(self.vault.sealer.open(row["body"], self._aad(row["draft_id"])))
        draft = Draft(tuple(body["rules"]), body["disease"], CaseFields(**body["fields"]),
                      body["patient_ref"], (body["patient_id"][0], body["patient_id"][1]),
                      body["patient_details"], tuple(body["sources"]))
        return GatewayDraft(row["draft_id"], row["org"], row["run_id"], row["status"],
                            row["patient"], draft, tuple((a, b, c) for a, b, c in
                                                         body["records"]),
                            bytes.fromhex(body["salt"]), row["created_ms"], row["recorded_tx"],
                            row["submitted_tx"], row["note"])

    def get(self, draft_id: str) -> GatewayDraft | None:
        rows = self.vault.rows("SELECT * FROM surveillance_drafts WHERE draft_id=?", (draft_id,))
        return self._load(rows[0]) if rows else None

    def all(self, status: str | None = None) -> list[GatewayDraft]:
        sql, args = "SELECT * FROM surveillance_drafts", []
        if status is not None:
            sql, args = sql + " WHERE status=?", [status]
        return [self._load(r) for r in self.vault.rows(sql + " ORDER BY created_ms, draft_id",
                                                       args)]

    def of_patient(self, disease: str, patient: str) -> list[GatewayDraft]:
        return [self._load(r) for r in self.vault.rows(
            "SELECT * FROM surveillance_drafts WHERE disease=? AND patient=?",
            (disease, patient))]

    def recorded(self, draft_id: str, tx: str) -> None:
        """The draft's digest is on the ledger (``case_reports.draft``) in ``tx``."""
        self._update(draft_id, ("open",), "open", recorded_tx=tx)

    def confirmed(self, draft_id: str, tx: str) -> None:
        """A physician confirmed it and ``case_reports.submit`` went through in ``tx``."""
        self._update(draft_id, ("open",), "confirmed", submitted_tx=tx)

    def discarded(self, draft_id: str, reason: str) -> None:
        self._update(draft_id, ("open",), "discarded", note=reason)

    def _update(self, draft_id: str, allowed: tuple[str, ...], status: str,
                **cols: str) -> None:
        row = self.vault.db.execute("SELECT status FROM surveillance_drafts WHERE draft_id=?",
                                    (draft_id,)).fetchone()
        if row is None:
            raise ReportError(Code.NOT_FOUND, f"no draft {draft_id} in this vault")
        if row[0] not in allowed:
            raise ReportError(Code.INVALID_STATE, f"draft {draft_id} is {row[0]}")
        sets = ", ".join(f"{k}=?" for k in ("status", "updated_ms", *cols))
        self.vault.db.execute(f"UPDATE surveillance_drafts SET {sets} WHERE draft_id=?",
                              (status, _now_ms(), *cols.values(), draft_id))


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class RunDrafts:
    """What one ``draft_run`` did: new drafts (stored), episodes already drafted (the covering
    draft's id), matches that could not become a draft, rows that could not be read."""

    run_id: str
    new: list[GatewayDraft] = field(default_factory=list)
    known: list[str] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    unread: list[Unread] = field(default_factory=list)

    def to_doc(self) -> dict[str, Any]:
        return {"run": self.run_id, "drafts": [d.summary() for d in self.new],
                "already_drafted": sorted(set(self.known)),
                "skipped": [{"resource": s.resource, "code": s.code, "message": s.message}
                            for s in self.skipped],
                "unread": [{"source": u.source_name, "position": u.position,
                            "reason": u.reason} for u in self.unread]}


def _gateway_id(patient: Mapping[str, Any]) -> tuple[str, str] | None:
    pid = patient.get("id")
    return (GATEWAY_PSEUDONYM, str(pid)) if pid else None


def _episodes(items: list[tuple[Draft, IdentifiedRecord]], days: int | None
              ) -> list[list[tuple[Draft, IdentifiedRecord]]]:
    """Split one person's drafts of one disease (sorted by date) where the gap to the
    episode's latest date exceeds ``days`` (never when None)."""
    out: list[list[tuple[Draft, IdentifiedRecord]]] = []
    last = ""
    for item in items:
        day = item[0].fields.diagnosis_date
        if not out or (days is not None and _gap(last, day) > days):
            out.append([])
        out[-1].append(item)
        last = max(last, day)
    return out


def _gap(a: str, b: str) -> int:
    return abs((date.fromisoformat(b) - date.fromisoformat(a)).days)


def _covered(existing: GatewayDraft, first: str, last: str, days: int | None) -> bool:
    """Whether a stored draft's date lies within ``days`` of the episode [first, last]."""
    if days is None:
        return True
    d = existing.draft.fields.diagnosis_date
    return first <= d <= last or min(_gap(d, first), _gap(d, last)) <= days


def _event_day(resource: Mapping[str, Any]) -> str:
    return str(resource.get("recordedDate") or resource.get("effectiveDateTime") or "")[:10]


def draft_run(vault: Vault, key: PseudonymKey, run_id: str, files: Sequence[Path],
              rules: GatewayRules, catalog: Catalog | None = None, *,
              since: date | None = None, hl7_encoding: str = "utf-8") -> RunDrafts:
    """Draft case reports from gateway run ``run_id`` (its source ``files`` are read again) and
    store the new ones in the vault; rows dated before ``since`` are left out (a first run
    over years of history should not draft cases reported long ago). Raises GatewayError for
    an unknown run."""
    catalog = catalog or Catalog()
    records, unread = identified_records(vault, key, run_id, files, rules.wants(catalog),
                                         hl7_encoding=hl7_encoding)
    if since is not None:
        records = [r for r in records if _event_day(r.resource) >= since.isoformat()]
    out = RunDrafts(run_id, unread=unread)
    ctx = DraftContext(catalog=catalog, district_of=rules.districts.district_of,
                       patient_id=_gateway_id)
    groups: dict[tuple[str, str, str], list[tuple[Draft, IdentifiedRecord]]] = {}
    for rec in records:
        drafts, skipped = draft_reports([rec.patient, rec.resource], rules.rules, ctx)
        out.skipped += [replace(s, resource=f"{rec.source_name}#{rec.position}")
                        for s in skipped]
        for d in drafts:
            groups.setdefault((rec.site, rec.pseudonym, d.disease), []).append((d, rec))
    store = DraftStore(vault)
    for (site, pseud, disease), items in sorted(groups.items()):
        items.sort(key=lambda it: (it[0].fields.diagnosis_date, it[1].record_id))
        entry = catalog.get(disease)
        days = entry.episode_days if entry is not None else None
        patient = patient_pseudonym(key.secret, GATEWAY_PSEUDONYM, pseud, disease)
        existing = store.of_patient(disease, patient)
        for episode in _episodes(items, days):
            first = episode[0][0].fields.diagnosis_date
            last = max(d.fields.diagnosis_date for d, _ in episode)
            cover = next((e for e in existing if _covered(e, first, last, days)), None)
            if cover is not None:
                out.known.append(cover.id)
                continue
            resources = [episode[0][1].patient, *(rec.resource for _, rec in episode)]
            merged = [d for d in draft_reports(resources, rules.rules, ctx)[0]
                      if d.disease == disease]
            if not merged:         # pragma: no cover - each resource drafted this disease alone
                continue
            new = GatewayDraft(
                "gw-" + secrets.token_hex(12), site, run_id, "open", patient, merged[0],
                tuple(sorted({(rec.source_name, rec.position, rec.record_id)
                              for _, rec in episode})), os.urandom(16), _now_ms())
            out.new.append(new)
            existing.append(new)
    store.add(out.new)
    return out


def record_args(draft: GatewayDraft) -> dict[str, Any]:
    """``case_reports.draft`` arguments: the salted digest and the first rule, nothing else."""
    return {"report_id": draft.id, "digest": draft.digest, "rule": draft.draft.rules[0]}


def submit_args(draft: GatewayDraft, *, chain_id: str, cdc: str, cdc_kex_key: bytes,
                key: PseudonymKey, physician: str, physician_key: SigningKey,
                onset_date: str | None = None, catalog: Catalog | None = None
                ) -> dict[str, Any]:
    """The ``case_reports.submit`` arguments once ``physician`` (a physician of the draft's
    organisation) has confirmed the draft: identified details and the physician's signature
    sealed to the CDC. ``onset_date`` adds the onset the physician knows."""
    if draft.status != "open":
        raise ReportError(Code.INVALID_STATE, f"draft {draft.id} is {draft.status}")
    if physician.split("/")[0] != draft.org:
        raise ReportError(Code.FORBIDDEN, f"{physician} is not of {draft.org}")
    fields = draft.draft.fields
    if onset_date is not None:
        fields = replace(fields, onset_date=onset_date)
    clinical = {"rules": list(draft.draft.rules),
                "source_records": [rid for _, _, rid in draft.records]}
    args = seal_report(chain_id=chain_id, org=draft.org, report_id=draft.id, cdc=cdc,
                       cdc_kex_key=cdc_kex_key, fields=fields,
                       patient_id=draft.draft.patient_id,
                       patient_details=draft.draft.patient_details, pseudonym_key=key.secret,
                       physician=physician, physician_key=physician_key, clinical=clinical,
                       catalog=catalog)
    if args["patient"] != draft.patient:
        raise ReportError(Code.BAD_ARGS, "the pseudonym key differs from the one the draft "
                          "was made with")
    return args
