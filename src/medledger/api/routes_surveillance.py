"""Surveillance read endpoints: zero-filled counts, signals and their line lists.

Counts and signals: any authenticated member. A signal's line list (the pseudonymous case
reports behind it): CDC staff only (403 ``forbidden`` otherwise). Writes go through
``POST /v1/tx`` to the ``case_reports`` and ``signals`` contracts.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query
from starlette.responses import Response

from medledger.api.auth import Member
from medledger.api.deps import get_node, json_response
from medledger.api.problems import problem_responses
from medledger.errors import Code, MedLedgerError
from medledger.node.node import Node
from medledger.surveillance import views
from medledger.surveillance.calendar import iso_week, parse_date, week_monday

router = APIRouter(prefix="/v1/surveillance")
NodeDep = Annotated[Node, Depends(get_node)]
MAX_POINTS = 5000


def _bad(message: str) -> MedLedgerError:
    return MedLedgerError(Code.BAD_ARGS, message)


@router.get(
    "/counts",
    tags=["surveillance"],
    summary="Zero-filled case counts by day or ISO week",
    responses=problem_responses(401, 422),
)
def get_counts(
    node: NodeDep,
    member: Member,
    disease: Annotated[str, Query(pattern=r"^[a-z0-9][a-z0-9-]{0,39}$",
                                  description="Catalog disease id")],
    start: Annotated[str, Query(alias="from", description="YYYY-MM-DD or YYYY-Www")],
    end: Annotated[str, Query(alias="to", description="YYYY-MM-DD or YYYY-Www")],
    by: Annotated[Literal["day", "week"], Query(description="Bucket")] = "week",
    district: Annotated[list[str] | None, Query(description="Districts (default: all)")] = None,
    age_band: Annotated[str | None, Query(description="Only this age band")] = None,
    sex: Annotated[str | None, Query(description="Only this sex")] = None,
    lab_status: Annotated[str | None, Query(description="Only this lab status")] = None,
) -> Response:
    """``{"disease", "by", "districts", "buckets": [...], "counts": [...]}``; 422 ``bad_args``
    for malformed or reversed bounds or more than 5000 buckets."""
    ds = district or views.districts(node.store, disease)
    strata = views.Strata(age_band, sex, lab_status)
    try:
        if by == "week":
            first, last = _week(start), _week(end)
            if (week_monday(last) - week_monday(first)).days // 7 >= MAX_POINTS:
                raise _bad(f"at most {MAX_POINTS} weeks")
            buckets, counts = views.weekly(node.store, disease, ds, first, last, strata)
        else:
            a, b = parse_date(start), parse_date(end)
            if (b - a).days >= MAX_POINTS:
                raise _bad(f"at most {MAX_POINTS} days")
            buckets, counts = views.daily(node.store, disease, ds, a, b, strata)
    except ValueError as exc:
        raise _bad(str(exc)) from None
    if not buckets:
        raise _bad(f"'to' {end} is before 'from' {start}")
    return json_response({"disease": disease, "by": by, "districts": ds, "buckets": buckets,
                          "counts": counts})


def _week(text: str) -> str:
    return text if "W" in text else iso_week(parse_date(text))


@router.get("/signals", tags=["surveillance"], summary="Recorded signals, newest week first",
            responses=problem_responses(401))
def get_signals(
    node: NodeDep,
    member: Member,
    status: Annotated[str | None, Query(description="open, confirmed, dismissed, closed")] = None,
    disease: Annotated[str | None, Query(description="Catalog disease id")] = None,
) -> Response:
    """``{"signals": [...]}``: summaries (evidence without the series)."""
    return json_response({"signals": views.signals(node.store, status, disease)})


@router.get("/signals/{signal_id}", tags=["surveillance"], summary="One signal with its "
            "evidence and log", responses=problem_responses(401, 404))
def get_signal(node: NodeDep, member: Member,
               signal_id: Annotated[str, Path(pattern=r"^[0-9a-f]{32}$")]) -> Response:
    """The signal: disease, stratum, method, parameters, series, thresholds, grade, status,
    and the CDC's log; 404 ``not_found``."""
    sig = views.signal(node.store, signal_id)
    if sig is None:
        raise MedLedgerError(Code.NOT_FOUND, f"no signal {signal_id}")
    return json_response(sig)


@router.get("/signals/{signal_id}/line-list", tags=["surveillance"],
            summary="The case reports behind a signal (CDC staff only)",
            responses=problem_responses(401, 403, 404))
def get_line_list(node: NodeDep, member: Member,
                  signal_id: Annotated[str, Path(pattern=r"^[0-9a-f]{32}$")]) -> Response:
    """``{"signal", "rows": [...]}``, one pseudonymous row per case; 403 ``forbidden`` unless
    the caller is on a CDC's staff (org-admin, physician, auditor, data-steward)."""
    if not views.may_see_line_list(node.store, member):
        raise MedLedgerError(Code.FORBIDDEN, f"{member} is not CDC staff; line lists are "
                             "for CDC staff only")
    sig = views.signal(node.store, signal_id)
    if sig is None:
        raise MedLedgerError(Code.NOT_FOUND, f"no signal {signal_id}")
    return json_response({"signal": signal_id, "rows": views.signal_line_list(node.store, sig)})
