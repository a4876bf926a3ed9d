"""Both ends of a case report off the ledger: the hospital seals it, the CDC opens it.

**Patient pseudonym** (``patient_pseudonym``): HMAC-SHA256 under the reporting organisations'
shared pseudonymisation key (at least 32 random bytes, held by hospitals and clinics, never put
on the ledger) over ``"medledger/surveillance/patient/v1\\n"`` and the canonical JSON of the
disease id and the patient's identifier (system and value, trimmed; the value upper-cased
without spaces). A keyed MAC, not a plain hash: identifiers are guessable, so without the key
nobody can test "is this person's pseudonym X". The disease is in the input, so one person's
pseudonyms for two diseases cannot be linked on the ledger; the same person reported for the
same disease by two hospitals gets the same pseudonym, which is how ``tally`` links them.

**Reporting physician**: on the ledger only a commitment
``reporter = HMAC-SHA256(r, "medledger/surveillance/reporter/v1\\n" + member id)`` with a fresh
32-byte ``r`` that travels inside the sealed payload; without ``r`` the commitment reveals
nothing and links nothing (each report has its own). The physician's Ed25519 signature over the
report (``confirmation_digest``) also travels sealed, so the CDC — and only the CDC — can name
the physician, check the commitment and check that the physician confirmed this very report.

**Payload**: canonical JSON ``{"v": 1, "patient": {...details...}, "reporter": {"member",
"kid", "nonce", "signature"}, "clinical": {...}}``, HPKE-sealed (``medledger.crypto.hpke``) to
the CDC organisation's registered X25519 ``kex_key`` with info
``"medledger/surveillance/case-report/v1\\n" + chain id + "\\n" + org/report_id``: a payload
copied into another report does not open.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import orjson

from medledger.crypto import canonical, hpke
from medledger.crypto.keys import SigningKey, b64, key_id, unb64, verify
from medledger.errors import Code, MedLedgerError
from medledger.surveillance.diseases import Catalog, normalise_icd10

__all__ = [
    "CaseFields", "OpenedReport", "ReportError", "confirmation_digest", "open_report",
    "patient_pseudonym", "reporter_commitment", "seal_report",
]

PATIENT_DOMAIN = b"medledger/surveillance/patient/v1\n"
REPORTER_DOMAIN = b"medledger/surveillance/reporter/v1\n"
CONFIRM_DOMAIN = b"medledger/surveillance/confirm/v1\n"
PAYLOAD_DOMAIN = b"medledger/surveillance/case-report/v1\n"
FIELDS = ("disease_code", "onset_date", "diagnosis_date", "district", "age_band", "sex",
          "lab_status")


class ReportError(MedLedgerError):
    """A case report that cannot be built or opened; the message says which check failed."""


class StateGetter(Protocol):
    def get_state(self, key: str) -> bytes | None: ...


def patient_pseudonym(key: bytes, id_system: str, id_value: str, disease: str) -> str:
    """64 hex: the patient's pseudonym for ``disease`` (a catalog disease id)."""
    if len(key) < 32:
        raise ReportError(Code.BAD_ARGS, f"pseudonymisation key has {len(key)} bytes; want >= 32")
    value = "".join(id_value.split()).upper()
    if not id_system.strip() or not value:
        raise ReportError(Code.BAD_ARGS, "patient identifier needs a system and a value")
    msg = PATIENT_DOMAIN + canonical.encode({"disease": disease, "system": id_system.strip(),
                                             "value": value})
    return hmac.new(key, msg, hashlib.sha256).hexdigest()


def reporter_commitment(nonce: bytes, member_id: str) -> str:
    return hmac.new(nonce, REPORTER_DOMAIN + member_id.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class CaseFields:
    """The public fields of a report, as the ``case_reports`` contract takes them."""

    disease_code: str
    diagnosis_date: str
    district: str
    age_band: str
    sex: str
    lab_status: str
    onset_date: str | None = None

    def to_args(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in FIELDS}


def confirmation_digest(chain_id: str, org: str, report_id: str, cdc: str, patient: str,
                        fields: CaseFields) -> bytes:
    """What the physician signs: SHA-256 over the domain and the report's public content."""
    doc = {"chain": chain_id, "org": org, "report_id": report_id, "cdc": cdc,
           "patient": patient, "fields": fields.to_args()}
    return hashlib.sha256(CONFIRM_DOMAIN + canonical.encode(doc)).digest()


def payload_info(chain_id: str, org: str, report_id: str) -> bytes:
    return PAYLOAD_DOMAIN + f"{chain_id}\n{org}/{report_id}".encode()


def seal_report(
    *,
    chain_id: str,
    org: str,
    report_id: str,
    cdc: str,
    cdc_kex_key: bytes,
    fields: CaseFields,
    patient_id: tuple[str, str],
    patient_details: dict[str, Any],
    pseudonym_key: bytes,
    physician: str,
    physician_key: SigningKey,
    clinical: dict[str, Any] | None = None,
    catalog: Catalog | None = None,
) -> dict[str, Any]:
    """The ``case_reports.submit`` arguments for a report the physician has confirmed.

    ``patient_details`` and ``clinical`` go only into the sealed payload (strings, integers,
    lists and objects; no floats). Raises ReportError when the code is not notifiable.
    """
    fields = replace(fields, disease_code=normalise_icd10(fields.disease_code))
    disease = (catalog or Catalog()).match(fields.disease_code)
    if disease is None:
        raise ReportError(Code.BAD_ARGS, f"ICD-10 {fields.disease_code} is not notifiable")
    patient = patient_pseudonym(pseudonym_key, patient_id[0], patient_id[1], disease.id)
    nonce = os.urandom(32)
    digest = confirmation_digest(chain_id, org, report_id, cdc, patient, fields)
    body = {"v": 1, "patient": patient_details, "clinical": clinical or {},
            "reporter": {"member": physician, "kid": physician_key.kid, "nonce": nonce.hex(),
                         "signature": b64(physician_key.sign(digest))}}
    sealed = hpke.seal(cdc_kex_key, canonical.encode(body), payload_info(chain_id, org,
                                                                         report_id))
    return {"report_id": report_id, "cdc": cdc, **fields.to_args(), "patient": patient,
            "reporter": reporter_commitment(nonce, physician), "kex_kid": key_id(cdc_kex_key),
            "payload": b64(sealed)}


@dataclass(frozen=True)
class OpenedReport:
    """A report as only the CDC sees it."""

    ref: str
    physician: str
    patient: dict[str, Any]
    clinical: dict[str, Any]
    problems: list[str] = field(default_factory=list)  # empty when every check passed

    @property
    def ok(self) -> bool:
        return not self.problems


def _physician_key(state: StateGetter, member_id: str, kid: str) -> bytes | None:
    raw = state.get_state(f"consortium/member/{member_id}")
    if raw is None:
        return None
    member = orjson.loads(raw)
    for k in member["keys"]:
        if k["kid"] == kid:
            return unb64(k["pub"], length=32)
    return None


def open_report(chain_id: str, record: dict[str, Any], cdc_secret: bytes,
                state: StateGetter) -> OpenedReport:
    """Open a report record (as stored by ``case_reports``) with the CDC's X25519 secret.

    Raises ReportError (``bad_args``) when the payload does not open. Otherwise returns the
    details, with ``problems`` naming every failed check: the commitment does not match the
    named physician, the physician is not a physician of the reporting organisation, or the
    signature does not cover the report's current fields as submitted.
    """
    org, report_id = record["org"], record["report_id"]
    try:
        plain = hpke.open(cdc_secret, unb64(record["payload"]),
                          payload_info(chain_id, org, report_id))
        body = orjson.loads(plain)
        who = body["reporter"]
        member, kid = str(who["member"]), str(who["kid"])
        nonce, sig = bytes.fromhex(who["nonce"]), unb64(who["signature"], length=64)
    except (MedLedgerError, orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ReportError(Code.BAD_ARGS, f"payload of {org}/{report_id} does not open: "
                          f"{exc}") from None
    problems = []
    if reporter_commitment(nonce, member) != record["reporter"]:
        problems.append(f"reporter commitment does not match {member}")
    raw = state.get_state(f"consortium/member/{member}")
    role = None if raw is None else orjson.loads(raw).get("role")
    if member.split("/")[0] != org or role != "physician":
        problems.append(f"{member} is not a physician of {org} (role {role})")
    submitted_fields = _fields_as_submitted(record)
    digest = confirmation_digest(chain_id, org, report_id, record["cdc"], record["patient"],
                                 submitted_fields)
    pub = _physician_key(state, member, kid)
    if pub is None or not verify(pub, digest, sig):
        problems.append(f"signature of {member} (key {kid}) does not cover this report")
    return OpenedReport(f"{org}/{report_id}", member, body.get("patient", {}),
                        body.get("clinical", {}), problems)


def _fields_as_submitted(record: dict[str, Any]) -> CaseFields:
    """The fields as the hospital submitted them (before any CDC revision)."""
    fields = dict(record["fields"])
    for entry in reversed(record["history"]):
        for name, (old, _new) in entry.get("changes", {}).items():
            fields[name] = old
    return CaseFields(**{k: fields[k] for k in FIELDS})
