"""The ``access`` contract: every access to a patient's records, granted or denied.

Each entry says who asked (member, organisation), whose data (pseudonym), which categories, for
what purpose, under which consent, the outcome (``granted``, ``denied``, or ``rejected`` when the
requester refused what it received) and a reason code (``medledger.consent.model.Reason``).
A request whose signature does not verify under the named member's key (``bad_signature``,
``unknown_requester``) authenticates nobody: its entry names the holder's recorder as
``requester`` and the member it claimed as ``claimed_requester`` (ADR 0045).

The ledger enforces as well as records: a ``granted`` entry for reason ``consented`` is refused
(``conflict``) unless the consent decision holds at the block's time, so a holder cannot log a
release the consent does not cover. A ``break_glass`` grant needs a physician or nurse of a
hospital or clinic, the SHA-256 of a justification the holder keeps, and an end at most 24 h
later; it is flagged for review by the holder organisation's auditor.

State keys under ``access/``:

* ``e/<patient>/<height:012d>/<tx_id>``  the entry (a patient's log is one prefix scan)
* ``req/<request_id>``                   the entry of a signed request (a replay is refused)
* ``review/<org>/<patient>/<height:012d>/<tx_id>``  break-glass entries awaiting the auditor
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from medledger.consent import model as m
from medledger.consortium.model import member_key
from medledger.contracts.base import Access, Args, Contract, ContractError, method
from medledger.contracts.context import Context
from medledger.errors import Code

HASH_HEX = r"^[0-9a-f]{64}$"
MEMBER = r"^[a-z0-9][a-z0-9-]{0,62}/[a-z0-9][a-z0-9._-]{0,62}$"
MAX_BREAK_GLASS_MS = 24 * 3_600_000
EMERGENCY_ROLES = frozenset({"physician", "nurse"})
RECORDER_ROLES = frozenset({"gateway", "data-steward", "org-admin"})
# refusals before anyone is authenticated: recorded under the holder's recorder (ADR 0045)
UNAUTHENTICATED = frozenset({m.Reason.BAD_SIGNATURE, m.Reason.UNKNOWN_REQUESTER})


class RecordArgs(Args):
    request_id: str = Field(pattern=HASH_HEX)
    requester: str = Field(pattern=MEMBER)
    holder: str = Field(pattern=m.ORG)
    patient: str = Field(pattern=m.PATIENT)
    categories: list[str] = Field(min_length=1, max_length=16)
    purpose: str = Field(pattern=r"^[a-z-]{1,32}$")
    outcome: Literal["granted", "denied", "rejected"]
    reason: str = Field(pattern=r"^[a-z_]{1,40}$")
    consent_id: str | None = Field(default=None, pattern=m.CONSENT_ID)
    break_glass: bool = False
    justification: str | None = Field(default=None, pattern=HASH_HEX)
    until: int | None = Field(default=None, ge=0)
    records: int = Field(default=0, ge=0, le=10_000_000)
    records_digest: str | None = Field(default=None, pattern=HASH_HEX)
    claimed_requester: str | None = Field(default=None, pattern=MEMBER)

    @model_validator(mode="after")
    def _check(self) -> RecordArgs:
        if self.reason not in m.Reason.__members__.values():
            raise ValueError(f"reason {self.reason!r}; want one of {[r.value for r in m.Reason]}")
        if self.claimed_requester is not None and (
                self.outcome != "denied" or self.reason not in UNAUTHENTICATED):
            want = sorted(r.value for r in UNAUTHENTICATED)
            raise ValueError(f"claimed_requester is for denied {want} entries; got "
                             f"{self.outcome} {self.reason}")
        if (self.outcome == "granted") != (self.reason in m.GRANTING):
            raise ValueError(f"outcome {self.outcome} does not fit reason {self.reason}")
        if self.reason == m.Reason.BREAK_GLASS and not self.break_glass:
            raise ValueError("reason break_glass needs break_glass true")
        return self


class ReviewArgs(Args):
    entry: str = Field(pattern=r"^e/[a-z0-9]{1,8}-[0-9a-f]{32}/[0-9]{12}/[0-9a-f]{64}$")
    decision: Literal["justified", "unjustified"]
    note: str = Field(default="", max_length=500)


def entry_key(patient: str, height: int, tx_id: str) -> str:
    return f"e/{patient}/{height:012d}/{tx_id}"


class AccessLog(Contract):
    name = "access"

    @method(RecordArgs,
            reads=lambda a, org: [f"access/req/{a.get('request_id', '')}",
                                  f"consent/p/{a.get('patient', '')}"])
    def record(self, ctx: Context, args: RecordArgs) -> Any:
        """Record one access decision (the holder) or a rejected delivery (the requester).

        An unauthenticated attempt (``claimed_requester`` set) names its recorder as
        ``requester`` and neither needs nor claims ``req/<request_id>``: a forged copy of a
        request must not use up the genuine one (ADR 0045)."""
        req_key = f"req/{args.request_id}"
        claimed = args.claimed_requester is not None
        decides = not claimed and args.outcome != "rejected"
        replay = args.reason == m.Reason.REPLAYED_REQUEST
        if decides and not replay and ctx.exists(req_key):
            raise ContractError(Code.ALREADY_EXISTS, f"request {args.request_id} was already "
                                "decided; a replay is recorded with reason replayed_request")
        if claimed and args.requester != ctx.caller.id:
            raise ContractError(Code.FORBIDDEN, f"an unauthenticated attempt is recorded under "
                                f"its recorder: got requester {args.requester}, want "
                                f"{ctx.caller.id}")
        self._check_recorder(ctx, args)
        if args.reason == m.Reason.CONSENTED:
            self._check_consent(ctx, args)
        if args.break_glass and args.outcome == "granted":
            self._check_break_glass(ctx, args)
        key = entry_key(args.patient, ctx.height, ctx.tx_id)
        # entries without a claim keep the shape they had before the field (replay from genesis)
        fields = args.model_dump(mode="json", exclude=None if claimed else {"claimed_requester"})
        doc = {**fields, "recorded_by": ctx.caller.id, "height": ctx.height, "time": ctx.time,
               "tx": ctx.tx_id, "flagged": args.break_glass}
        ctx.put(key, doc)
        if decides and not replay:
            ctx.put(req_key, {"entry": key})
        if args.break_glass:
            ctx.put(f"review/{args.holder}/{key[2:]}", {"entry": key, "status": "pending"})
        ctx.emit("access_recorded", {"entry": key, "patient": args.patient,
                                     "outcome": args.outcome, "reason": args.reason,
                                     "break_glass": args.break_glass})
        return {"entry": key}

    @method(ReviewArgs, access=Access(roles=frozenset({"auditor"})))
    def review(self, ctx: Context, args: ReviewArgs) -> Any:
        """The holder's auditor closes a flagged break-glass entry."""
        rkey = f"review/{ctx.caller.org}/{args.entry[2:]}"
        rev = ctx.get(rkey)
        if rev is None:
            raise ContractError(Code.NOT_FOUND, f"{ctx.caller.org} has no flagged {args.entry}")
        if rev["status"] != "pending":
            raise ContractError(Code.INVALID_STATE, f"already reviewed: {rev['status']}")
        ctx.put(rkey, {"entry": args.entry, "status": args.decision, "by": ctx.caller.id,
                       "note": args.note, "height": ctx.height, "tx": ctx.tx_id})
        ctx.emit("break_glass_reviewed", {"entry": args.entry, "decision": args.decision})
        return None

    def _check_recorder(self, ctx: Context, args: RecordArgs) -> None:
        """Decisions: the holder's gateway, data steward or admin. Rejections: the requester
        itself or its organisation's gateway, data steward or admin."""
        if args.outcome == "rejected":
            if ctx.caller.id == args.requester or (
                    ctx.caller.org == args.requester.split("/")[0]
                    and ctx.caller.role in RECORDER_ROLES):
                return
            raise ContractError(Code.FORBIDDEN, "only the requester rejects a delivery")
        if ctx.caller.org != args.holder or ctx.caller.role not in RECORDER_ROLES:
            raise ContractError(Code.FORBIDDEN, f"{ctx.caller.id} may not record decisions of "
                                f"{args.holder}")

    def _check_consent(self, ctx: Context, args: RecordArgs) -> None:
        member = ctx.read("consortium", member_key(args.requester))
        if member is None:
            raise ContractError(Code.NOT_FOUND, f"no member {args.requester}")
        index = ctx.read("consent", m.patient_key(args.patient))
        d = m.decide(index, member["org"], member["role"], args.purpose, args.categories,
                     ctx.time)
        if not d.granted or d.consent_id != args.consent_id:
            raise ContractError(Code.CONFLICT, f"consent does not hold at block time: got "
                                f"{d.reason} ({d.consent_id}), want consented "
                                f"({args.consent_id})")

    def _check_break_glass(self, ctx: Context, args: RecordArgs) -> None:
        member = ctx.read("consortium", member_key(args.requester))
        org = None if member is None else ctx.read("consortium", f"org/{member['org']}")
        if (member is None or org is None or member["role"] not in EMERGENCY_ROLES
                or org["kind"] not in {"hospital", "clinic"}):
            raise ContractError(Code.FORBIDDEN, "break-glass is for physicians and nurses of "
                                "hospitals and clinics")
        if args.justification is None:
            raise ContractError(Code.BAD_ARGS, "break-glass needs a justification hash")
        if args.until is None or not ctx.time < args.until <= ctx.time + MAX_BREAK_GLASS_MS:
            raise ContractError(Code.BAD_ARGS, f"break-glass until {args.until}; want within "
                                f"({ctx.time}, {ctx.time + MAX_BREAK_GLASS_MS}]")
