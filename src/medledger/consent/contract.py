"""The ``consent`` contract: patients' consents to use their records (FHIR Consent, permit).

A consent is recorded either by the patient's own agent (a ``patient-agent`` member that a
hospital linked to the pseudonym after checking the patient's identity at its desk) or by a
hospital member on the patient's behalf, who must then give ``evidence`` — the SHA-256 of the
signed consent form the hospital keeps. Revoking marks the consent revoked in the block that
carries the revocation: every check made against that height or later is denied ("from the next
block" for any request still in flight). Nothing is erased; ``Store.state_at`` gives the status
at any height and the grant and revoke transactions carry inclusion proofs.

Methods:

* ``link_agent(patient, member)`` — a hospital or clinic org-admin or data-steward binds the
  patient's agent;
* ``grant(consent_id, patient, purpose, categories, recipient_org | recipient_role, start,
  end?, evidence?)`` — the patient's agent, or a hospital member with evidence, adds a consent;
* ``revoke(consent_id, reason, evidence?)`` — the same people revoke it.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, model_validator

from medledger.consent import model as m
from medledger.consortium.model import ROLES, member_key
from medledger.contracts.base import Access, Args, Contract, ContractError, method
from medledger.contracts.context import Context
from medledger.errors import Code

HASH_HEX = r"^[0-9a-f]{64}$"
Purpose = Literal["treatment", "referral", "research", "insurance-claim", "public-health"]
RECORDERS = frozenset({"hospital", "clinic", "patient-app"})
HOSPITAL_ROLES = frozenset({"org-admin", "data-steward", "physician", "nurse"})
LINKERS = frozenset({"org-admin", "data-steward"})


class LinkAgentArgs(Args):
    patient: str = Field(pattern=m.PATIENT)
    member: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}/[a-z0-9][a-z0-9._-]{0,62}$")


class GrantArgs(Args):
    consent_id: str = Field(pattern=m.CONSENT_ID)
    patient: str = Field(pattern=m.PATIENT)
    purpose: Purpose
    categories: list[str] = Field(min_length=1, max_length=16)
    recipient_org: str | None = Field(default=None, pattern=m.ORG)
    recipient_role: str | None = None
    start: int = Field(ge=0)
    end: int | None = Field(default=None, ge=0)
    evidence: str | None = Field(default=None, pattern=HASH_HEX)

    @model_validator(mode="after")
    def _check(self) -> GrantArgs:
        if (self.recipient_org is None) == (self.recipient_role is None):
            raise ValueError("give exactly one of recipient_org and recipient_role")
        if self.recipient_role is not None and self.recipient_role not in ROLES:
            raise ValueError(f"recipient_role {self.recipient_role!r}; want one of {sorted(ROLES)}")
        if self.end is not None and self.end <= self.start:
            raise ValueError(f"end {self.end} must be after start {self.start}")
        for c in self.categories:
            if not re.match(m.CATEGORY, c):
                raise ValueError(f"category {c!r} does not match {m.CATEGORY}")
        if len(set(self.categories)) != len(self.categories):
            raise ValueError("categories repeat")
        return self


class RevokeArgs(Args):
    consent_id: str = Field(pattern=m.CONSENT_ID)
    reason: str = Field(min_length=1, max_length=200)
    evidence: str | None = Field(default=None, pattern=HASH_HEX)


def _patient_reads(a: dict[str, Any], org: str) -> list[str]:
    p = str(a.get("patient", ""))
    return [f"consent/{m.patient_key(p)}", f"consent/{m.agent_key(p)}",
            f"consent/{m.consent_key(str(a.get('consent_id', '')))}"]


class Consent(Contract):
    name = "consent"

    @method(LinkAgentArgs, access=Access(kinds=frozenset({"hospital", "clinic"}), roles=LINKERS))
    def link_agent(self, ctx: Context, args: LinkAgentArgs) -> Any:
        """Bind the ``patient-agent`` member who may sign the patient's consents."""
        member = ctx.read("consortium", member_key(args.member))
        if member is None or member.get("role") != "patient-agent":
            raise ContractError(Code.NOT_FOUND, f"{args.member} is not a patient-agent member")
        if ctx.exists(m.agent_key(args.patient)):
            raise ContractError(Code.ALREADY_EXISTS, "the patient already has an agent")
        ctx.put(m.agent_key(args.patient), {"member": args.member, "linked_by": ctx.caller.id,
                                            "height": ctx.height, "tx": ctx.tx_id})
        ctx.emit("agent_linked", {"patient": args.patient})
        return None

    @method(GrantArgs, access=Access(kinds=RECORDERS), reads=_patient_reads)
    def grant(self, ctx: Context, args: GrantArgs) -> Any:
        """Add a consent (patient's agent, or a hospital member with the signed form's hash)."""
        signed_by = self._authorise(ctx, args.patient, args.evidence)
        if ctx.exists(m.consent_key(args.consent_id)):
            raise ContractError(Code.ALREADY_EXISTS, f"consent {args.consent_id} exists")
        recipient = ({"org": args.recipient_org} if args.recipient_org is not None
                     else {"role": args.recipient_role})
        summary = {"purpose": args.purpose, "categories": sorted(args.categories),
                   "recipient": recipient, "start": args.start, "end": args.end,
                   "status": "active"}
        index = ctx.get(m.patient_key(args.patient)) or {}
        if len(index) >= 256:
            raise ContractError(Code.CONFLICT, "the patient has 256 consents; revoke some first")
        index[args.consent_id] = summary
        ctx.put(m.patient_key(args.patient), index)
        ctx.put(m.consent_key(args.consent_id), {
            **summary, "consent_id": args.consent_id, "patient": args.patient,
            "signed_by": signed_by, "recorded_by": ctx.caller.id, "evidence": args.evidence,
            "granted": {"height": ctx.height, "time": ctx.time, "tx": ctx.tx_id},
            "revoked": None})
        ctx.emit("consent_granted", {"consent_id": args.consent_id, "patient": args.patient,
                                     "purpose": args.purpose})
        return {"consent_id": args.consent_id}

    @method(RevokeArgs, access=Access(kinds=RECORDERS),
            reads=lambda a, org: [f"consent/{m.consent_key(str(a.get('consent_id', '')))}"])
    def revoke(self, ctx: Context, args: RevokeArgs) -> Any:
        """Revoke a consent; every check at this block's height or later is denied."""
        doc = ctx.get(m.consent_key(args.consent_id))
        if doc is None:
            raise ContractError(Code.NOT_FOUND, f"no consent {args.consent_id}")
        if doc["status"] != "active":
            raise ContractError(Code.INVALID_STATE, f"consent {args.consent_id} is "
                                f"{doc['status']}")
        signed_by = self._authorise(ctx, doc["patient"], args.evidence)
        doc["status"] = "revoked"
        doc["revoked"] = {"height": ctx.height, "time": ctx.time, "tx": ctx.tx_id,
                          "by": ctx.caller.id, "signed_by": signed_by, "reason": args.reason,
                          "evidence": args.evidence}
        ctx.put(m.consent_key(args.consent_id), doc)
        index = ctx.get(m.patient_key(doc["patient"]))
        index[args.consent_id]["status"] = "revoked"
        ctx.put(m.patient_key(doc["patient"]), index)
        ctx.emit("consent_revoked", {"consent_id": args.consent_id, "patient": doc["patient"]})
        return None

    def _authorise(self, ctx: Context, patient: str, evidence: str | None) -> str:
        """``patient`` when the patient's own agent signs; ``form`` for a hospital member who
        gives the signed form's hash. Anyone else is ``forbidden``."""
        if ctx.caller.role == "patient-agent":
            agent = ctx.get(m.agent_key(patient))
            if agent is None or agent["member"] != ctx.caller.id:
                raise ContractError(Code.FORBIDDEN, f"{ctx.caller.id} is not the agent of "
                                    f"patient {patient}")
            return "patient"
        if ctx.caller.org_kind in {"hospital", "clinic"} and ctx.caller.role in HOSPITAL_ROLES:
            if evidence is None:
                raise ContractError(Code.BAD_ARGS, "a hospital records a consent only with "
                                    "evidence: the SHA-256 of the signed form")
            return "form"
        raise ContractError(Code.FORBIDDEN, f"{ctx.caller.id} ({ctx.caller.role}) may not "
                            "record consents")
