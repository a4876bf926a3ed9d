"""Counts kept on the ledger: cases by disease × district × day and ISO week, with strata.

Runs inside the ``case_reports`` contract, so it is deterministic and touches only that
contract's state (keys below, under ``case_reports/``):

* ``case/<disease>/<patient>``                   the person's cases (episodes) of one disease:
  ``{"episodes": [{"reports": [ref, ...], "counted": cell | null}]}``
* ``day/<disease>/<district>/<YYYY-MM-DD>``      ``{"n": cases, "s": {"<age>|<sex>|<lab>": n}}``
* ``week/<disease>/<district>/<YYYY-Www>``       the same per ISO week
* ``line/<disease>/<district>/<date>/<case>``    ``{"report": ref}``: the report a case is
  counted by (the line list behind a cell); ``<case>`` is ``<patient>.<episode>``
* ``district/<disease>/<district>``              ``{"first": date}``: districts with reports

**Linking, not double counting.** Every active report (submitted, verified or revised) belongs
to one case of its (disease, patient pseudonym). A report joins the first case whose active
reports' dates lie within ``episode_days`` of its own date (any case, when ``episode_days`` is
None), otherwise it opens a new case. Each case with at least one active report counts exactly
once, in the cell of its representative report: the earliest date (onset, or diagnosis when
onset is unknown), then the earliest submission, then the report reference. Its lab status is
``confirmed`` if any of its reports is. Reports of one person from several hospitals therefore
add one case, and revoking one of them moves or removes that case only when it was the last.
Cells with no case are deleted: readers fill zeros.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from medledger.contracts.context import Context
from medledger.surveillance.calendar import iso_week, parse_date

ACTIVE = frozenset({"submitted", "verified", "revised"})
Cell = dict[str, str]


def report_key(ref: str) -> str:
    return f"report/{ref}"


def case_key(disease: str, patient: str) -> str:
    return f"case/{disease}/{patient}"


def count_date(fields: dict[str, Any]) -> str:
    """The date a report is counted on: onset, else diagnosis."""
    return str(fields["onset_date"] or fields["diagnosis_date"])


def _sort_key(rec: dict[str, Any]) -> tuple[str, int, str]:
    return (count_date(rec["fields"]), rec["submitted"]["height"],
            f"{rec['org']}/{rec['report_id']}")


def counted_cell(reports: list[dict[str, Any]]) -> Cell | None:
    """The cell one case counts in, from its reports (None when none is active)."""
    active = [r for r in reports if r["status"] in ACTIVE]
    if not active:
        return None
    rep = min(active, key=_sort_key)
    f = rep["fields"]
    lab = "confirmed" if any(r["fields"]["lab_status"] == "confirmed" for r in active) \
        else f["lab_status"]
    return {"district": f["district"], "date": count_date(f), "age_band": f["age_band"],
            "sex": f["sex"], "lab_status": lab, "report": f"{rep['org']}/{rep['report_id']}"}


def _bump(ctx: Context, key: str, stratum: str, delta: int) -> None:
    value = ctx.get(key) or {"n": 0, "s": {}}
    value["n"] += delta
    value["s"][stratum] = value["s"].get(stratum, 0) + delta
    if value["s"][stratum] == 0:
        del value["s"][stratum]
    if value["n"] == 0:
        ctx.delete(key)
    else:
        ctx.put(key, value)


def _count(ctx: Context, disease: str, cell: Cell, case_id: str, delta: int) -> None:
    district, day = cell["district"], cell["date"]
    stratum = f"{cell['age_band']}|{cell['sex']}|{cell['lab_status']}"
    _bump(ctx, f"day/{disease}/{district}/{day}", stratum, delta)
    _bump(ctx, f"week/{disease}/{district}/{iso_week(parse_date(day))}", stratum, delta)
    line = f"line/{disease}/{district}/{day}/{case_id}"
    if delta > 0:
        ctx.put(line, {"report": cell["report"]})
        index = f"district/{disease}/{district}"
        if not ctx.exists(index):
            ctx.put(index, {"first": day})
    else:
        ctx.delete(line)


def _recount(ctx: Context, disease: str, patient: str, case: dict[str, Any], i: int) -> None:
    """Bring episode ``i``'s counted cell up to date with its reports' current records."""
    episode = case["episodes"][i]
    reports = [ctx.get(report_key(ref)) for ref in episode["reports"]]
    new = counted_cell([r for r in reports if r is not None])
    old = episode["counted"]
    if new != old:
        case_id = f"{patient}.{i}"
        if old is not None:
            _count(ctx, disease, old, case_id, -1)
        if new is not None:
            _count(ctx, disease, new, case_id, +1)
        episode["counted"] = new


def _episode_dates(ctx: Context, episode: dict[str, Any]) -> list[date]:
    out = []
    for ref in episode["reports"]:
        rec = ctx.get(report_key(ref))
        if rec is not None and rec["status"] in ACTIVE:
            out.append(parse_date(count_date(rec["fields"])))
    return out


def attach(ctx: Context, rec: dict[str, Any], episode_days: int | None) -> tuple[int, bool]:
    """Link the (already stored, active) report ``rec`` to a case and recount it.

    Returns (episode index, True when it opened a new case).
    """
    disease, patient = rec["disease"], rec["patient"]
    ref = f"{rec['org']}/{rec['report_id']}"
    case = ctx.get(case_key(disease, patient)) or {"episodes": []}
    day = parse_date(count_date(rec["fields"]))
    chosen = None
    for i, episode in enumerate(case["episodes"]):
        dates = _episode_dates(ctx, episode)
        if dates and (episode_days is None or
                      ((min(dates) - day).days <= episode_days and
                      (day - max(dates)).days <= episode_days)):
            chosen = i
            break
    new_case = chosen is None
    if chosen is None:
        case["episodes"].append({"reports": [], "counted": None})
        chosen = len(case["episodes"]) - 1
    case["episodes"][chosen]["reports"].append(ref)
    _recount(ctx, disease, patient, case, chosen)
    ctx.put(case_key(disease, patient), case)
    return chosen, new_case


def detach(ctx: Context, rec: dict[str, Any], old_disease: str, episode: int) -> None:
    """Take report ``rec`` out of episode ``episode`` of its (old) disease and recount it.

    ``rec`` must already be stored with its new status or fields.
    """
    ref = f"{rec['org']}/{rec['report_id']}"
    key = case_key(old_disease, rec["patient"])
    case = ctx.get(key)
    if case is None or episode >= len(case["episodes"]):
        return
    if ref in case["episodes"][episode]["reports"]:
        case["episodes"][episode]["reports"].remove(ref)
    _recount(ctx, old_disease, rec["patient"], case, episode)
    ctx.put(key, case)
