"""The ``signals`` contract: aberration alerts on the ledger with their evidence, graded, and the
CDC's logged verification and response.

Detection runs off the ledger (``monitor``): it needs floating point and R-compatible GLMs,
which a contract must not depend on for its result. What the ledger records is the *evidence*,
enough for anyone to recompute the alert from the ledger itself: the disease, the stratum
(district, region with its districts, age band or sex), the method and its parameters, the
weekly series it saw (zero-filled counts from ``first_week`` to the signal's ``week``), the
height whose counts it read (``as_of_height``), and the thresholds (decimal strings; floats are
not canonical JSON). The contract checks that the evidence supports the grade, using exact
decimal arithmetic: ``yellow`` when the week's count exceeds ``threshold`` (reaches it, for
CUSUM, whose bound is the smallest alarming count) but not ``red_threshold``; ``red`` when it
exceeds both. One signal per (disease, stratum, method, week): its id is derived from them, so a
monitor run repeated is refused with ``already_exists`` and changes nothing.

Lifecycle (members of the raising CDC; roles org-admin, physician, auditor, data-steward)::

    open ──verify_signal(confirmed)──▶ confirmed ──respond(action…)──▶ … ──respond(closed)──▶ closed
      └───verify_signal(dismissed)──▶ dismissed

Every step is appended to the signal's ``log`` with who, when (block time and height) and note.
Notes are free text for epidemiologists: they must not carry identifying data (not enforced).
"""

from __future__ import annotations

import hashlib
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from pydantic import Field

from medledger.contracts.base import Access, Args, Contract, ContractError, method
from medledger.contracts.context import Context
from medledger.crypto import canonical
from medledger.errors import Code
from medledger.surveillance.calendar import parse_week, week_monday, weeks
from medledger.surveillance.reports import CDC_ROLES, CDC_STAFF

__all__ = ["DETECTORS", "Signals", "alarm", "signal_id"]

DETECTORS = ("ears-c1", "ears-c2", "ears-c3", "farrington", "farrington-flexible", "cusum",
             "mpm", "single-case")
DISEASE = r"^[a-z0-9][a-z0-9-]{0,39}$"
WEEK = r"^\d{4}-W\d{2}$"
CODE = r"^[A-Za-z0-9-]{1,16}$"
DECIMAL = r"^-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$"
SIGNAL_ID = r"^[0-9a-f]{32}$"
MONITORS = Access(kinds=frozenset({"cdc"}), roles=CDC_ROLES | {"service"})
ParamValue = str | int | bool | list[str] | list[int]


class Stratum(Args):
    district: str | None = Field(default=None, pattern=CODE)
    region: str | None = Field(default=None, pattern=CODE)
    age_band: Literal["0-4", "5-14", "15-24", "25-44", "45-64", "65+", "unknown"] | None = None
    sex: Literal["female", "male", "other", "unknown"] | None = None


class RaiseArgs(Args):
    disease: str = Field(pattern=DISEASE)
    stratum: Stratum
    districts: list[str] = Field(default_factory=list, max_length=5000)
    method: Literal["ears-c1", "ears-c2", "ears-c3", "farrington", "farrington-flexible",
                    "cusum", "mpm", "single-case"]
    parameters: dict[str, ParamValue] = Field(default_factory=dict, max_length=40)
    red_parameters: dict[str, ParamValue] = Field(default_factory=dict, max_length=40)
    week: str = Field(pattern=WEEK)
    first_week: str = Field(pattern=WEEK)
    counts: list[int] = Field(min_length=1, max_length=800)
    threshold: str = Field(pattern=DECIMAL, max_length=40)
    red_threshold: str | None = Field(default=None, pattern=DECIMAL, max_length=40)
    grade: Literal["red", "yellow"]
    as_of_height: int = Field(ge=0)


class VerifyArgs(Args):
    signal: str = Field(pattern=SIGNAL_ID)
    outcome: Literal["confirmed", "dismissed"]
    note: str = Field(min_length=1, max_length=1000)


class RespondArgs(Args):
    signal: str = Field(pattern=SIGNAL_ID)
    action: Literal["investigation", "specimens", "control-measures", "risk-communication",
                    "escalated", "closed"]
    note: str = Field(min_length=1, max_length=1000)


def signal_id(disease: str, stratum: dict[str, Any], method: str, week: str) -> str:
    """32 hex: SHA-256 over the canonical (disease, stratum without nulls, method, week)."""
    doc = {"disease": disease, "method": method, "week": week,
           "stratum": {k: v for k, v in stratum.items() if v is not None}}
    return hashlib.sha256(b"medledger/signal/v1\n" + canonical.encode(doc)).hexdigest()[:32]


def alarm(method: str, observed: int, threshold: Decimal) -> bool:
    """Whether ``observed`` alarms against ``threshold``: ≥ for CUSUM (its bound is the smallest
    alarming count), > for every other method."""
    return observed >= threshold if method == "cusum" else observed > threshold


def _bad(message: str) -> ContractError:
    return ContractError(Code.BAD_ARGS, message)


def _decimal(text: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:  # pragma: no cover - the pattern admits only finite decimals
        raise _bad(f"{text!r} is not a decimal") from None
    return value


def _check_evidence(ctx: Context, args: RaiseArgs) -> None:
    for w in (args.week, args.first_week):
        try:
            parse_week(w)
        except ValueError as exc:
            raise _bad(str(exc)) from None
    if week_monday(args.first_week) > week_monday(args.week):
        raise _bad(f"first_week {args.first_week} is after week {args.week}")
    span = len(weeks(args.first_week, args.week))
    if span != len(args.counts):
        raise _bad(f"{len(args.counts)} counts for {span} weeks {args.first_week}..{args.week}")
    if any(c < 0 for c in args.counts):
        raise _bad("counts must be >= 0")
    if args.as_of_height > ctx.height:
        raise _bad(f"as_of_height {args.as_of_height} is after this block ({ctx.height})")
    s = args.stratum
    if sum(v is not None for v in (s.district, s.region, s.age_band, s.sex)) > 1:
        raise _bad("a stratum names at most one of district, region, age_band, sex")
    if s.region is not None and not args.districts:
        raise _bad("a region stratum lists its districts")
    if s.district is not None and args.districts != [s.district]:
        raise _bad(f"a district stratum sums over that district only; got {args.districts}")
    observed = args.counts[-1]
    yellow = alarm(args.method, observed, _decimal(args.threshold))
    red = args.red_threshold is not None and alarm(args.method, observed,
                                                   _decimal(args.red_threshold))
    want = "red" if red else "yellow" if yellow else None
    if want != args.grade:
        raise _bad(f"observed {observed} against threshold {args.threshold} (red "
                   f"{args.red_threshold}) supports {want or 'no alert'}, not {args.grade}")


def _entry(ctx: Context, action: str, note: str) -> dict[str, Any]:
    return {"action": action, "by": ctx.caller.id, "height": ctx.height, "time": ctx.time,
            "tx": ctx.tx_id, "note": note}


class Signals(Contract):
    name = "signals"

    @method(RaiseArgs, access=MONITORS)
    def raise_signal(self, ctx: Context, args: RaiseArgs) -> Any:
        """Record an alert with its evidence (a CDC's monitoring service or staff)."""
        _check_evidence(ctx, args)
        stratum = args.stratum.model_dump(exclude_none=True)
        sid = signal_id(args.disease, stratum, args.method, args.week)
        if ctx.exists(f"signal/{sid}"):
            raise ContractError(Code.ALREADY_EXISTS, f"signal {sid} ({args.disease} "
                                f"{stratum or 'all'} {args.method} {args.week}) exists")
        ctx.put(f"signal/{sid}", {
            "id": sid, "org": ctx.caller.org, "disease": args.disease, "stratum": stratum,
            "districts": sorted(args.districts), "method": args.method,
            "parameters": args.parameters, "red_parameters": args.red_parameters,
            "week": args.week, "series": {"first_week": args.first_week, "counts": args.counts},
            "observed": args.counts[-1], "threshold": args.threshold,
            "red_threshold": args.red_threshold, "grade": args.grade,
            "as_of_height": args.as_of_height, "status": "open",
            "raised": {"by": ctx.caller.id, "height": ctx.height, "time": ctx.time,
                       "tx": ctx.tx_id},
            "log": []})
        ctx.emit("signal_raised", {"signal": sid, "disease": args.disease, "stratum": stratum,
                                   "week": args.week, "grade": args.grade})
        return {"signal": sid}

    def _own(self, ctx: Context, sid: str) -> dict[str, Any]:
        sig = ctx.get(f"signal/{sid}")
        if sig is None:
            raise ContractError(Code.NOT_FOUND, f"no signal {sid}")
        if sig["org"] != ctx.caller.org:
            raise ContractError(Code.FORBIDDEN, f"signal {sid} was raised by {sig['org']}")
        return dict(sig)

    @method(VerifyArgs, access=CDC_STAFF)
    def verify_signal(self, ctx: Context, args: VerifyArgs) -> Any:
        """Confirm an open signal as a true aberration, or dismiss it; logged."""
        sig = self._own(ctx, args.signal)
        if sig["status"] != "open":
            raise ContractError(Code.INVALID_STATE, f"signal {args.signal} is {sig['status']}")
        sig["status"] = args.outcome
        sig["log"].append(_entry(ctx, args.outcome, args.note))
        ctx.put(f"signal/{args.signal}", sig)
        ctx.emit("signal_verified", {"signal": args.signal, "outcome": args.outcome})
        return {"status": args.outcome}

    @method(RespondArgs, access=CDC_STAFF)
    def respond(self, ctx: Context, args: RespondArgs) -> Any:
        """Log a response to a confirmed signal; ``closed`` ends it."""
        sig = self._own(ctx, args.signal)
        if sig["status"] != "confirmed":
            raise ContractError(Code.INVALID_STATE, f"signal {args.signal} is {sig['status']}; "
                                "responses follow a confirmed signal")
        sig["log"].append(_entry(ctx, args.action, args.note))
        if args.action == "closed":
            sig["status"] = "closed"
        ctx.put(f"signal/{args.signal}", sig)
        ctx.emit("signal_response", {"signal": args.signal, "action": args.action})
        return {"status": sig["status"]}
