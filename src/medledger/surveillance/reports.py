"""The ``case_reports`` contract: notifiable-disease case reports and the counts kept from them.

A report is keyed ``report/<org>/<report_id>`` (the reporting organisation and its own opaque
id). On the ledger it holds only:

* the notifiable disease (ICD-10 code, and the catalog's disease id), onset and diagnosis
  dates, district, age band, sex and lab-confirmation status;
* the patient as a keyed pseudonym (64 hex, HMAC-SHA256 under the reporting organisations'
  pseudonymisation key; ``casefile.patient_pseudonym``), never a name or an identifier;
* the reporting physician as a one-time commitment (64 hex) that only the CDC can open;
* ``payload``: patient details and the physician's identity and signature, HPKE-sealed to the
  addressed CDC organisation's registered X25519 key (``kex_kid`` names that key).

States and who moves them (``ORG KIND / roles``)::

    draft ──submit──▶ submitted ──verify──▶ verified
      │                   │  └────revise──▶ revised ◀─┐ (verify, revise, revoke again)
      └─discard─▶ discarded   └───revoke──▶ revoked   │ (from submitted, verified, revised)

* ``draft``, ``discard``, ``submit``: hospital or clinic, roles gateway / service /
  data-steward — the organisation's reporting relay. A physician confirms a report inside the
  hospital and is named only in the sealed payload, so physicians do not sign here (their
  member id would name them). A draft records only a salted digest of the drafted content and
  the rule that made it: unconfirmed suspicions leave no case data on the ledger.
* ``verify``, ``revise``, ``revoke``: members of the addressed CDC with roles org-admin,
  physician, auditor or data-steward.
* ``configure``: a CDC org-admin sets the notifiable-disease catalog and the district list.

Counting (``tally``): every active report is linked to a case of its (disease, pseudonym);
each case counts once in the disease × district × day and × ISO-week cells, so reports of one
person from several hospitals are not double-counted. Bad input is refused with ``bad_args``
(schema, dates, codes), ``not_found``, ``invalid_state``, ``conflict`` (payload sealed to a key
the CDC no longer has) or ``forbidden``, and changes nothing.
"""

from __future__ import annotations

import base64
import binascii
import re
from datetime import timedelta
from typing import Any, Literal

from pydantic import Field

from medledger.contracts.base import Access, Args, Contract, ContractError, method
from medledger.contracts.context import Context
from medledger.crypto.keys import BadKeyError, key_id, unb64
from medledger.errors import Code
from medledger.surveillance import tally
from medledger.surveillance.calendar import iso_week, parse_date, utc_date
from medledger.surveillance.diseases import (
    AGE_BANDS,
    LAB_STATUSES,
    SEXES,
    Catalog,
    CatalogError,
    normalise_icd10,
)

__all__ = ["CDC_STAFF", "REPORTERS", "CaseReports", "load_catalog"]

REPORT_ID = r"^[A-Za-z0-9._:-]{1,128}$"
ORG = r"^[a-z0-9][a-z0-9-]{0,62}$"
HEX64 = r"^[0-9a-f]{64}$"
DATE = r"^\d{4}-\d{2}-\d{2}$"
DISTRICT = r"^[A-Za-z0-9-]{1,16}$"
ICD10_ARG = r"^[A-Za-z][0-9]{2}(\.?[0-9A-Za-z]{1,4})?$"
RULE = r"^[A-Za-z0-9._:-]{1,64}$"
MAX_PAYLOAD_B64 = 16_384
MIN_PAYLOAD = 48  # HPKE enc (32) + tag (16)
EARLIEST = "1950-01-01"

REPORTERS = Access(kinds=frozenset({"hospital", "clinic"}),
                   roles=frozenset({"gateway", "service", "data-steward"}))
CDC_ROLES = frozenset({"org-admin", "physician", "auditor", "data-steward"})
CDC_STAFF = Access(kinds=frozenset({"cdc"}), roles=CDC_ROLES)
CDC_ADMIN = Access(kinds=frozenset({"cdc"}), roles=frozenset({"org-admin"}))

AgeBand = Literal["0-4", "5-14", "15-24", "25-44", "45-64", "65+", "unknown"]
Sex = Literal["female", "male", "other", "unknown"]
LabStatus = Literal["confirmed", "pending", "negative", "not-tested"]
assert set(AgeBand.__args__) == set(AGE_BANDS)  # type: ignore[attr-defined]
assert set(Sex.__args__) == set(SEXES)  # type: ignore[attr-defined]
assert set(LabStatus.__args__) == set(LAB_STATUSES)  # type: ignore[attr-defined]


class DraftArgs(Args):
    report_id: str = Field(pattern=REPORT_ID)
    digest: str = Field(pattern=HEX64)
    rule: str = Field(pattern=RULE)


class ReportRef(Args):
    report_id: str = Field(pattern=REPORT_ID)
    reason: str = Field(default="", max_length=500)


class SubmitArgs(Args):
    report_id: str = Field(pattern=REPORT_ID)
    cdc: str = Field(pattern=ORG)
    disease_code: str = Field(pattern=ICD10_ARG)
    onset_date: str | None = Field(default=None, pattern=DATE)
    diagnosis_date: str = Field(pattern=DATE)
    district: str = Field(pattern=DISTRICT)
    age_band: AgeBand
    sex: Sex
    lab_status: LabStatus
    patient: str = Field(pattern=HEX64)
    reporter: str = Field(pattern=HEX64)
    kex_kid: str = Field(pattern=r"^[0-9a-f]{16}$")
    payload: str = Field(min_length=64, max_length=MAX_PAYLOAD_B64)


class CdcArgs(Args):
    org: str = Field(pattern=ORG)
    report_id: str = Field(pattern=REPORT_ID)
    note: str = Field(default="", max_length=500)


class ReviseArgs(Args):
    org: str = Field(pattern=ORG)
    report_id: str = Field(pattern=REPORT_ID)
    reason: str = Field(min_length=1, max_length=500)
    disease_code: str | None = Field(default=None, pattern=ICD10_ARG)
    onset_date: str | None = Field(default=None, pattern=DATE)
    clear_onset_date: bool = False
    diagnosis_date: str | None = Field(default=None, pattern=DATE)
    district: str | None = Field(default=None, pattern=DISTRICT)
    age_band: AgeBand | None = None
    sex: Sex | None = None
    lab_status: LabStatus | None = None


class RevokeArgs(Args):
    org: str = Field(pattern=ORG)
    report_id: str = Field(pattern=REPORT_ID)
    reason: str = Field(min_length=1, max_length=500)


class ConfigureArgs(Args):
    catalog: list[dict[str, Any]] | None = Field(default=None, max_length=500)
    districts: list[str] | None = Field(default=None, max_length=20_000)


def _bad(message: str) -> ContractError:
    return ContractError(Code.BAD_ARGS, message)


def load_catalog(raw_config: dict[str, Any] | None) -> Catalog:
    """The catalog in force: the configured one, else ``DEFAULT_CATALOG``."""
    if raw_config and raw_config.get("catalog") is not None:
        return Catalog.from_doc(raw_config["catalog"])
    return Catalog()


_CATALOGS: dict[str, Catalog] = {}


def _config(ctx: Context) -> tuple[Catalog, list[str] | None]:
    cfg = ctx.get("config")
    docs = None if cfg is None else cfg.get("catalog")
    cache_key = repr(docs)
    catalog = _CATALOGS.get(cache_key)
    if catalog is None:
        catalog = load_catalog(cfg)
        if len(_CATALOGS) > 16:
            _CATALOGS.clear()
        _CATALOGS[cache_key] = catalog
    return catalog, None if cfg is None else cfg.get("districts")


def _check_fields(ctx: Context, fields: dict[str, Any]) -> str:
    """Validate the public fields (normalising the code in place); return the disease id."""
    catalog, districts = _config(ctx)
    code = normalise_icd10(fields["disease_code"])
    disease = catalog.match(code)
    if disease is None:
        raise _bad(f"ICD-10 {code} is not a notifiable disease in the catalog")
    fields["disease_code"] = code
    try:
        diagnosed = parse_date(fields["diagnosis_date"])
        onset = None if fields["onset_date"] is None else parse_date(fields["onset_date"])
    except ValueError as exc:
        raise _bad(str(exc)) from None
    latest = utc_date(ctx.time) + timedelta(days=1)
    if not parse_date(EARLIEST) <= diagnosed <= latest:
        raise _bad(f"diagnosis_date {diagnosed} is outside {EARLIEST}..{latest} (block date + 1)")
    if onset is not None and not parse_date(EARLIEST) <= onset <= diagnosed:
        raise _bad(f"onset_date {onset} is after diagnosis_date {diagnosed} or before {EARLIEST}")
    if districts is not None and fields["district"] not in districts:
        raise _bad(f"district {fields['district']} is not in the configured district list")
    return disease.id


def _check_payload(text: str) -> None:
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, ValueError):
        raise _bad("payload is not standard base64") from None
    if len(raw) < MIN_PAYLOAD:
        raise _bad(f"payload has {len(raw)} bytes; an HPKE message has at least {MIN_PAYLOAD}")


def _check_cdc(ctx: Context, cdc: str, kex_kid: str) -> None:
    org = ctx.read("consortium", f"org/{cdc}")
    if org is None or org["kind"] != "cdc":
        raise ContractError(Code.NOT_FOUND, f"no CDC organisation {cdc}")
    if org["status"] != "active":
        raise ContractError(Code.INVALID_STATE, f"CDC {cdc} is {org['status']}")
    try:
        current = key_id(unb64(org["kex_key"], length=32))
    except BadKeyError:  # pragma: no cover - genesis and governance check kex keys
        raise ContractError(Code.INVALID_STATE, f"CDC {cdc} has no usable kex key") from None
    if kex_kid != current:
        raise ContractError(Code.CONFLICT, f"payload sealed to key {kex_kid}; CDC {cdc}'s "
                            f"key is {current}")


def _stamp(ctx: Context, action: str, **extra: Any) -> dict[str, Any]:
    return {"action": action, "by": ctx.caller.id, "height": ctx.height, "time": ctx.time,
            "tx": ctx.tx_id, **extra}


def _episode_days(ctx: Context, disease: str) -> int | None:
    d = _config(ctx)[0].get(disease)
    return None if d is None else d.episode_days


class CaseReports(Contract):
    name = "case_reports"

    @method(DraftArgs, access=REPORTERS)
    def draft(self, ctx: Context, args: DraftArgs) -> Any:
        """Record that a rule drafted a report: a salted digest of the draft, no case data."""
        key = tally.report_key(f"{ctx.caller.org}/{args.report_id}")
        if ctx.exists(key):
            raise ContractError(Code.ALREADY_EXISTS, f"report {args.report_id} exists")
        ctx.put(key, {"org": ctx.caller.org, "report_id": args.report_id, "status": "draft",
                      "digest": args.digest, "rule": args.rule,
                      "history": [_stamp(ctx, "draft", rule=args.rule)]})
        ctx.emit("report_drafted", {"report": f"{ctx.caller.org}/{args.report_id}",
                                    "rule": args.rule})
        return {"status": "draft"}

    @method(ReportRef, access=REPORTERS)
    def discard(self, ctx: Context, args: ReportRef) -> Any:
        """Discard a draft the physician did not confirm (kept, marked discarded)."""
        key = tally.report_key(f"{ctx.caller.org}/{args.report_id}")
        rec = ctx.get(key)
        if rec is None:
            raise ContractError(Code.NOT_FOUND, f"{ctx.caller.org} has no report "
                                f"{args.report_id}")
        if rec["status"] != "draft":
            raise ContractError(Code.INVALID_STATE, f"report {args.report_id} is "
                                f"{rec['status']}; only a draft can be discarded")
        rec["status"] = "discarded"
        rec["history"].append(_stamp(ctx, "discard", reason=args.reason))
        ctx.put(key, rec)
        ctx.emit("report_discarded", {"report": f"{ctx.caller.org}/{args.report_id}"})
        return {"status": "discarded"}

    @method(SubmitArgs, access=REPORTERS)
    def submit(self, ctx: Context, args: SubmitArgs) -> Any:
        """Submit a physician-confirmed report (from a draft, or directly) to a CDC."""
        ref = f"{ctx.caller.org}/{args.report_id}"
        key = tally.report_key(ref)
        rec = ctx.get(key)
        if rec is not None and rec["status"] != "draft":
            raise ContractError(Code.INVALID_STATE, f"report {args.report_id} is "
                                f"{rec['status']}")
        fields = {k: getattr(args, k) for k in ("disease_code", "onset_date", "diagnosis_date",
                                                "district", "age_band", "sex", "lab_status")}
        disease = _check_fields(ctx, fields)
        _check_payload(args.payload)
        _check_cdc(ctx, args.cdc, args.kex_kid)
        history = [] if rec is None else rec["history"]
        submitted = {"height": ctx.height, "time": ctx.time, "tx": ctx.tx_id}
        rec = {"org": ctx.caller.org, "report_id": args.report_id, "status": "submitted",
               "cdc": args.cdc, "disease": disease, "fields": fields, "patient": args.patient,
               "reporter": args.reporter, "kex_kid": args.kex_kid, "payload": args.payload,
               "submitted": submitted, "episode": 0,
               "history": [*history, _stamp(ctx, "submit")],
               **({} if rec is None else {"digest": rec["digest"], "rule": rec["rule"]})}
        ctx.put(key, rec)
        episode, new_case = tally.attach(ctx, rec, _episode_days(ctx, disease))
        rec["episode"] = episode
        ctx.put(key, rec)
        day = tally.count_date(fields)
        ctx.emit("report_submitted", {"report": ref, "cdc": args.cdc, "disease": disease,
                                      "district": args.district, "date": day,
                                      "week": iso_week(parse_date(day)),
                                      "case": "new" if new_case else "linked"})
        return {"status": "submitted", "disease": disease, "episode": episode,
                "case": "new" if new_case else "linked"}

    def _cdc_record(self, ctx: Context, org: str, report_id: str,
                    allowed: frozenset[str]) -> tuple[str, dict[str, Any]]:
        key = tally.report_key(f"{org}/{report_id}")
        rec = ctx.get(key)
        if rec is None or rec["status"] in ("draft", "discarded"):
            raise ContractError(Code.NOT_FOUND, f"no submitted report {org}/{report_id}")
        if rec["cdc"] != ctx.caller.org:
            raise ContractError(Code.FORBIDDEN, f"report {org}/{report_id} is addressed to "
                                f"{rec['cdc']}, not {ctx.caller.org}")
        if rec["status"] not in allowed:
            raise ContractError(Code.INVALID_STATE, f"report {org}/{report_id} is "
                                f"{rec['status']}; want one of {sorted(allowed)}")
        return key, rec

    @method(CdcArgs, access=CDC_STAFF)
    def verify(self, ctx: Context, args: CdcArgs) -> Any:
        """The CDC confirms a submitted or revised report."""
        key, rec = self._cdc_record(ctx, args.org, args.report_id,
                                    frozenset({"submitted", "revised"}))
        rec["status"] = "verified"
        rec["history"].append(_stamp(ctx, "verify", note=args.note))
        ctx.put(key, rec)
        ctx.emit("report_verified", {"report": f"{args.org}/{args.report_id}"})
        return {"status": "verified"}

    @method(ReviseArgs, access=CDC_STAFF)
    def revise(self, ctx: Context, args: ReviseArgs) -> Any:
        """The CDC corrects a report's public fields; the counts follow."""
        key, rec = self._cdc_record(ctx, args.org, args.report_id,
                                    frozenset({"submitted", "revised", "verified"}))
        fields = dict(rec["fields"])
        for name in ("disease_code", "onset_date", "diagnosis_date", "district", "age_band",
                     "sex", "lab_status"):
            value = getattr(args, name)
            if value is not None:
                fields[name] = value
        if args.clear_onset_date:
            if args.onset_date is not None:
                raise _bad("give onset_date or clear_onset_date, not both")
            fields["onset_date"] = None
        disease = _check_fields(ctx, fields)
        changes = {k: [rec["fields"][k], v] for k, v in fields.items() if rec["fields"][k] != v}
        if not changes:
            raise _bad("revise changes nothing")
        old_disease, old_episode = rec["disease"], rec["episode"]
        rec.update(status="revised", fields=fields, disease=disease)
        rec["history"].append(_stamp(ctx, "revise", reason=args.reason, changes=changes))
        ctx.put(key, rec)
        tally.detach(ctx, rec, old_disease, old_episode)
        rec["episode"], _ = tally.attach(ctx, rec, _episode_days(ctx, disease))
        ctx.put(key, rec)
        ctx.emit("report_revised", {"report": f"{args.org}/{args.report_id}",
                                    "changed": sorted(changes)})
        return {"status": "revised", "changed": sorted(changes), "episode": rec["episode"]}

    @method(RevokeArgs, access=CDC_STAFF)
    def revoke(self, ctx: Context, args: RevokeArgs) -> Any:
        """The CDC withdraws a report (not a case, duplicate, error); it stops counting."""
        key, rec = self._cdc_record(ctx, args.org, args.report_id,
                                    frozenset({"submitted", "revised", "verified"}))
        rec["status"] = "revoked"
        rec["history"].append(_stamp(ctx, "revoke", reason=args.reason))
        ctx.put(key, rec)
        tally.detach(ctx, rec, rec["disease"], rec["episode"])
        ctx.emit("report_revoked", {"report": f"{args.org}/{args.report_id}"})
        return {"status": "revoked"}

    @method(ConfigureArgs, access=CDC_ADMIN)
    def configure(self, ctx: Context, args: ConfigureArgs) -> Any:
        """Set the notifiable-disease catalog and/or the district list (null: no list)."""
        cfg = dict(ctx.get("config") or {})
        if args.catalog is not None:
            try:
                Catalog.from_doc(args.catalog)
            except CatalogError as exc:
                raise _bad(str(exc)) from None
            cfg["catalog"] = args.catalog
        if args.districts is not None:
            bad = [d for d in args.districts if not re.match(DISTRICT, d)]
            if bad:
                raise _bad(f"district codes {bad[:5]} do not match {DISTRICT}")
            cfg["districts"] = sorted(set(args.districts))
        if args.catalog is None and args.districts is None:
            raise _bad("configure needs catalog or districts")
        cfg["by"], cfg["height"] = ctx.caller.id, ctx.height
        ctx.put("config", cfg)
        ctx.emit("surveillance_configured", {"by": ctx.caller.id})
        return None
