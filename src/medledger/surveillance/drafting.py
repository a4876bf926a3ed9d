"""Automatic drafting: rules over FHIR R4 resources propose case reports for a physician.

``draft_reports(resources, rules, context)`` takes plain FHIR R4 JSON dicts (a Bundle's entries
or a list: Patient, Observation, Condition) and returns one ``Draft`` per (patient, notifiable
disease), plus a ``Skipped`` entry, with a reason code, for every resource a rule matched but
that could not become a draft. It knows nothing of the gateway: anything that holds FHIR
resources can call it. Two kinds of rule:

* ``LabRule``: a final (or preliminary, amended, corrected) Observation whose ``code`` has one
  of the rule's codings (e.g. LOINC) and whose result is positive — ``valueCodeableConcept``
  SNOMED CT 10828004 *Positive*, 260373001 *Detected*, 11214006 *Reactive* or 52101004
  *Present* (the gateway's qualitative results, ``gateway.qualitative``); an
  ``interpretation`` of HL7 v3 ObservationInterpretation ``POS`` or ``DET``; or a
  ``valueString`` "positive", "detected" or "reactive" — drafts the rule's ICD-10 code with
  lab status ``confirmed``.
* ``DiagnosisRule``: a Condition coded in ICD-10 (``http://hl7.org/fhir/sid/icd-10``, or
  ``-cm``) whose code is notifiable in the catalog (and starts with one of the rule's prefixes,
  when it lists any), not refuted or entered in error, drafts that code with lab status
  ``pending`` (``confirmed`` if a lab rule fired for the same patient and disease).

Fields come from the resources: onset from ``Condition.onset[x]``, diagnosis date from
``Condition.recordedDate`` or the Observation's effective/issued date, age band from
``Patient.birthDate`` at diagnosis, sex from ``Patient.gender``, district from
``context.district_of(patient)`` (default: the first address's ``district``). The patient
identifier used for the pseudonym is ``context.patient_id(patient)`` when set (drafts from a
gateway run use the consortium pseudonym, ``fromgateway``), else the identifier with
``context.identifier_system`` (or the first). Drafts are proposals: nothing reaches the
ledger until a physician confirms (``casefile.seal_report``); the ledger's ``draft`` records
only ``Draft.digest``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any

from medledger.crypto import canonical
from medledger.surveillance.casefile import CaseFields
from medledger.surveillance.diseases import ICD10, Catalog, age_band, normalise_icd10

__all__ = [
    "DiagnosisRule",
    "Draft",
    "DraftContext",
    "LabRule",
    "RuleSet",
    "Skipped",
    "draft_reports",
]

ICD10_SYSTEMS = frozenset({"http://hl7.org/fhir/sid/icd-10", "http://hl7.org/fhir/sid/icd-10-cm"})
SNOMED = "http://snomed.info/sct"
POSITIVE_VALUES = frozenset({(SNOMED, "10828004"), (SNOMED, "260373001"), (SNOMED, "11214006"),
                             (SNOMED, "52101004")})
INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
POSITIVE_INTERPRETATIONS = frozenset({(INTERPRETATION, "POS"), (INTERPRETATION, "DET")})
POSITIVE_STRINGS = frozenset({"positive", "detected", "reactive"})
RESULT_STATUSES = frozenset({"final", "amended", "corrected", "preliminary"})
EXCLUDED_VERIFICATION = frozenset({"refuted", "entered-in-error"})


@dataclass(frozen=True)
class LabRule:
    id: str
    codes: frozenset[tuple[str, str]]  # (system, code) of Observation.code
    disease_code: str  # ICD-10 to report

    def __post_init__(self) -> None:
        if not ICD10.match(normalise_icd10(self.disease_code)) or not self.codes:
            raise ValueError(f"lab rule {self.id}: needs codes and an ICD-10 disease_code")


@dataclass(frozen=True)
class DiagnosisRule:
    id: str
    prefixes: tuple[str, ...] = ()  # ICD-10 prefixes; empty: every notifiable code


@dataclass(frozen=True)
class RuleSet:
    lab: tuple[LabRule, ...] = ()
    diagnosis: tuple[DiagnosisRule, ...] = (DiagnosisRule("notifiable-diagnosis"),)

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> RuleSet:
        """From JSON: ``{"lab": [{"id", "codes": [[system, code], ...], "disease_code"}],
        "diagnosis": [{"id", "prefixes": [...]}]}``; raises ValueError with the reason."""
        try:
            lab = tuple(LabRule(r["id"], frozenset((s, c) for s, c in r["codes"]),
                                r["disease_code"]) for r in doc.get("lab", []))
            dx = tuple(DiagnosisRule(r["id"], tuple(r.get("prefixes", [])))
                       for r in doc.get("diagnosis", []))
        except (KeyError, TypeError) as exc:
            raise ValueError(f"rules document is malformed: {exc!r}") from None
        return cls(lab, dx)


def _district(patient: Mapping[str, Any]) -> str | None:
    for address in patient.get("address", []):
        if address.get("district"):
            return str(address["district"])
    return None


@dataclass(frozen=True)
class DraftContext:
    catalog: Catalog = field(default_factory=Catalog)
    district_of: Callable[[Mapping[str, Any]], str | None] = _district
    identifier_system: str | None = None
    # (system, value) the pseudonym is computed from; default: the chosen identifier
    patient_id: Callable[[Mapping[str, Any]], tuple[str, str] | None] | None = None


@dataclass(frozen=True)
class Draft:
    """A proposed report for one patient and disease, awaiting a physician."""

    rules: tuple[str, ...]
    disease: str
    fields: CaseFields
    patient_ref: str
    patient_id: tuple[str, str]
    patient_details: dict[str, Any]
    sources: tuple[str, ...]

    def digest(self, salt: bytes) -> str:
        """Hex SHA-256 of a random ``salt`` and the draft: what ``case_reports.draft`` records."""
        doc = {"rules": list(self.rules), "fields": self.fields.to_args(),
               "patient": self.patient_ref, "sources": list(self.sources)}
        return hashlib.sha256(salt + canonical.encode(doc)).hexdigest()


@dataclass(frozen=True)
class Skipped:
    resource: str
    code: str  # bad_args, not_found
    message: str


def _ref(resource: Mapping[str, Any]) -> str:
    return f"{resource.get('resourceType')}/{resource.get('id')}"


def _codings(concept: Any) -> list[tuple[str, str]]:
    if not isinstance(concept, Mapping):
        return []
    return [(str(c.get("system", "")), str(c.get("code", ""))) for c in concept.get("coding", [])
            if isinstance(c, Mapping)]


def _day(value: Any) -> str | None:
    """The date part of a FHIR date or dateTime string."""
    if isinstance(value, str) and len(value) >= 10:
        try:
            return date.fromisoformat(value[:10]).isoformat()
        except ValueError:
            return None
    return None


def _positive(obs: Mapping[str, Any]) -> bool:
    if set(_codings(obs.get("valueCodeableConcept"))) & POSITIVE_VALUES:
        return True
    if any(set(_codings(i)) & POSITIVE_INTERPRETATIONS for i in obs.get("interpretation", [])):
        return True
    value = obs.get("valueString")
    return isinstance(value, str) and value.strip().lower() in POSITIVE_STRINGS


@dataclass
class _Hit:
    rule: str
    code: str
    patient: str
    source: str
    onset: str | None
    diagnosed: str | None
    lab: bool


def _lab_hits(obs: Mapping[str, Any], rules: RuleSet) -> list[_Hit]:
    if obs.get("status") not in RESULT_STATUSES or not _positive(obs):
        return []
    codes = set(_codings(obs.get("code")))
    day = _day(obs.get("effectiveDateTime")) or _day(obs.get("issued"))
    subject = str((obs.get("subject") or {}).get("reference", ""))
    return [_Hit(r.id, normalise_icd10(r.disease_code), subject, _ref(obs), None, day, True)
            for r in rules.lab if codes & r.codes]


def _dx_hits(cond: Mapping[str, Any], rules: RuleSet, catalog: Catalog) -> list[_Hit]:
    status = {c for _, c in _codings(cond.get("verificationStatus"))}
    if status & EXCLUDED_VERIFICATION:
        return []
    subject = str((cond.get("subject") or {}).get("reference", ""))
    onset = _day(cond.get("onsetDateTime")) or _day((cond.get("onsetPeriod") or {}).get("start"))
    day = _day(cond.get("recordedDate")) or onset
    hits = []
    for system, code in _codings(cond.get("code")):
        if system not in ICD10_SYSTEMS:
            continue
        code = normalise_icd10(code)
        if not ICD10.match(code) or catalog.match(code) is None:
            continue
        for r in rules.diagnosis:
            if not r.prefixes or any(code.replace(".", "").startswith(p.replace(".", ""))
                                     for p in r.prefixes):
                hits.append(_Hit(r.id, code, subject, _ref(cond), onset, day, False))
                break
    return hits


def _patient_fields(patient: Mapping[str, Any], context: DraftContext,
                    diagnosed: str) -> tuple[tuple[str, str] | None, str | None, str, str]:
    ids = [i for i in patient.get("identifier", []) if isinstance(i, Mapping)
           and i.get("value") and (context.identifier_system is None
                                   or i.get("system") == context.identifier_system)]
    pid = (str(ids[0].get("system", "")), str(ids[0]["value"])) if ids else None
    if context.patient_id is not None:
        pid = context.patient_id(patient)
    born = _day(patient.get("birthDate") if len(str(patient.get("birthDate", ""))) >= 10
                else None)
    years = None
    if born is not None:
        b, d = date.fromisoformat(born), date.fromisoformat(diagnosed)
        years = d.year - b.year - ((d.month, d.day) < (b.month, b.day))
    sex = patient.get("gender") if patient.get("gender") in ("female", "male", "other") \
        else "unknown"
    return pid, context.district_of(patient), age_band(years), str(sex)


def _details(patient: Mapping[str, Any]) -> dict[str, Any]:
    """What the sealed payload carries about the patient (only the CDC reads it)."""
    keep = ("identifier", "name", "birthDate", "gender", "address", "telecom")
    return canonical.decode(canonical.encode({k: patient[k] for k in keep if k in patient}))  # type: ignore[no-any-return]


def draft_reports(resources: Iterable[Mapping[str, Any]], rules: RuleSet,
                  context: DraftContext = DraftContext()) -> tuple[list[Draft], list[Skipped]]:
    """Drafts from ``resources`` (dicts, or a Bundle's entries), and what was skipped, why."""
    items = [r.get("resource", r) for r in resources]
    patients = {_ref(p): p for p in items if p.get("resourceType") == "Patient"}
    hits: list[_Hit] = []
    for res in items:
        if res.get("resourceType") == "Observation":
            hits += _lab_hits(res, rules)
        elif res.get("resourceType") == "Condition":
            hits += _dx_hits(res, rules, context.catalog)
    grouped: dict[tuple[str, str], list[_Hit]] = {}
    skipped: list[Skipped] = []
    for hit in hits:
        matched = context.catalog.match(hit.code)
        if matched is None:
            skipped.append(Skipped(hit.source, "bad_args", f"rule {hit.rule}: {hit.code} is "
                                   "not notifiable in the catalog"))
            continue
        grouped.setdefault((hit.patient, matched.id), []).append(hit)
    drafts = []
    for (patient_ref, disease_id), group in grouped.items():
        draft, problem = _draft(patient_ref, disease_id, group, patients, context)
        if draft is not None:
            drafts.append(draft)
        else:
            skipped += [replace(problem, resource=h.source) for h in group] if problem else []
    return drafts, skipped


def _draft(patient_ref: str, disease: str, group: list[_Hit],
           patients: Mapping[str, Mapping[str, Any]],
           context: DraftContext) -> tuple[Draft | None, Skipped | None]:
    patient = patients.get(patient_ref)
    if patient is None:
        return None, Skipped("", "not_found", f"subject {patient_ref or '(none)'} is not a "
                             "Patient in the input")
    days = sorted(d for h in group if (d := h.diagnosed))
    if not days:
        return None, Skipped("", "bad_args", "no diagnosis, effective or issued date")
    onsets = sorted(o for h in group if (o := h.onset))
    pid, district, band, sex = _patient_fields(patient, context, days[0])
    if pid is None:
        return None, Skipped("", "bad_args", f"{patient_ref} has no usable identifier")
    if district is None:
        return None, Skipped("", "bad_args", f"{patient_ref} has no district")
    dx = [h for h in group if not h.lab]
    code = (dx or group)[0].code
    onset = onsets[0] if onsets and onsets[0] <= days[0] else None
    fields = CaseFields(disease_code=code, onset_date=onset, diagnosis_date=days[0],
                        district=district, age_band=band, sex=sex,
                        lab_status="confirmed" if any(h.lab for h in group) else "pending")
    return Draft(tuple(sorted({h.rule for h in group})), disease, fields, patient_ref, pid,
                 _details(patient), tuple(sorted({h.source for h in group}))), None
