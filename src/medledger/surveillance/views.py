"""Reading the surveillance state: zero-filled series, districts, line lists, signals.

Pure functions over anything with ``get_states``/``scan_state`` (a node's store, a
``HistoricalState`` at a past height for the series, the test harness). The HTTP routes, the CLI
and the monitor all read through here.

Who may read what is decided here too (``may_see_line_list``): counts and signals are for every
active member; a line list (the pseudonymous reports behind a cell or a signal) only for the
staff of a CDC organisation (roles org-admin, physician, auditor, data-steward).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, Protocol

import orjson

from medledger.surveillance.calendar import days, iso_week, week_monday, weeks
from medledger.surveillance.diseases import Catalog
from medledger.surveillance.reports import CDC_ROLES, load_catalog

__all__ = [
    "Strata", "catalog", "daily", "districts", "line_list", "may_see_line_list",
    "member_info", "signal", "signals", "weekly", "weekly_cells",
]
SCAN_LIMIT = 1_000_000


class Reader(Protocol):
    def get_states(self, keys: Sequence[str]) -> dict[str, bytes | None]: ...


class Scanner(Reader, Protocol):
    def get_state(self, key: str) -> bytes | None: ...

    def scan_state(self, prefix: str, limit: int = 1000) -> list[tuple[str, bytes]]: ...


@dataclass(frozen=True)
class Strata:
    """A filter on a cell's strata; None matches everything."""

    age_band: str | None = None
    sex: str | None = None
    lab_status: str | None = None

    def count(self, cell: dict[str, Any] | None) -> int:
        if cell is None:
            return 0
        if self.age_band is None and self.sex is None and self.lab_status is None:
            return int(cell["n"])
        total = 0
        for key, n in cell["s"].items():
            age, sex, lab = key.split("|")
            if ((self.age_band is None or age == self.age_band)
                    and (self.sex is None or sex == self.sex)
                    and (self.lab_status is None or lab == self.lab_status)):
                total += n
        return total

    def matches(self, fields: dict[str, Any]) -> bool:
        return all(want is None or fields[name] == want for name, want in
                   (("age_band", self.age_band), ("sex", self.sex),
                    ("lab_status", self.lab_status)))


def _load(raw: bytes | None) -> Any:
    return None if raw is None else orjson.loads(raw)


def catalog(state: Scanner) -> Catalog:
    return load_catalog(_load(state.get_state("case_reports/config")))


def districts(state: Scanner, disease: str) -> list[str]:
    """Districts with at least one report of ``disease`` (ever), sorted."""
    prefix = f"case_reports/district/{disease}/"
    return [k[len(prefix):] for k, _ in state.scan_state(prefix, SCAN_LIMIT)]


def diseases_with_data(state: Scanner) -> list[str]:
    prefix = "case_reports/district/"
    return sorted({k[len(prefix):].split("/")[0] for k, _ in state.scan_state(prefix,
                                                                             SCAN_LIMIT)})


def weekly_cells(state: Reader, disease: str, districts_: Sequence[str], first: str,
                 last: str) -> tuple[list[str], dict[str, list[dict[str, Any] | None]]]:
    """(weeks first..last, district → the week cells, None where no case) in one read."""
    ws = weeks(first, last)
    keys = [f"case_reports/week/{disease}/{d}/{w}" for d in districts_ for w in ws]
    got = state.get_states(keys)
    return ws, {d: [_load(got[f"case_reports/week/{disease}/{d}/{w}"]) for w in ws]
                for d in districts_}


def weekly(state: Reader, disease: str, districts_: Sequence[str], first: str, last: str,
           strata: Strata = Strata()) -> tuple[list[str], list[int]]:
    """Zero-filled weekly counts of ``disease`` summed over ``districts_``."""
    ws, cells = weekly_cells(state, disease, districts_, first, last)
    return ws, [sum(strata.count(cells[d][i]) for d in districts_) for i in range(len(ws))]


def daily(state: Reader, disease: str, districts_: Sequence[str], first: date, last: date,
          strata: Strata = Strata()) -> tuple[list[str], list[int]]:
    """Zero-filled daily counts of ``disease`` summed over ``districts_``."""
    ds = [d.isoformat() for d in days(first, last)]
    keys = [f"case_reports/day/{disease}/{dist}/{d}" for dist in districts_ for d in ds]
    got = state.get_states(keys)
    return ds, [sum(strata.count(_load(got[f"case_reports/day/{disease}/{dist}/{d}"]))
                    for dist in districts_) for d in ds]


def line_list(state: Scanner, disease: str, districts_: Iterable[str], first: date, last: date,
              strata: Strata = Strata()) -> list[dict[str, Any]]:
    """The cases counted in ``districts_`` from ``first`` to ``last``: one row per case, from the
    report it is counted by (pseudonymous; no payload)."""
    rows = []
    lo, hi = first.isoformat(), last.isoformat()
    for dist in districts_:
        prefix = f"case_reports/line/{disease}/{dist}/"
        for key, raw in state.scan_state(prefix, SCAN_LIMIT):
            day, case = key[len(prefix):].split("/")
            if not lo <= day <= hi:
                continue
            ref = orjson.loads(raw)["report"]
            rec = _load(state.get_state(f"case_reports/report/{ref}"))
            if rec is None or not strata.matches(rec["fields"]):
                continue
            rows.append({"case": case, "report": ref, "hospital": rec["org"],
                         "status": rec["status"], "patient": rec["patient"],
                         "counted_on": day, **rec["fields"]})
    return sorted(rows, key=lambda r: (r["counted_on"], r["district"], r["report"]))


def member_info(state: Scanner, member_id: str) -> tuple[str, str, str]:
    """(org, role, org kind) of an enrolled member; KeyError if unknown."""
    member = _load(state.get_state(f"consortium/member/{member_id}"))
    if member is None:
        raise KeyError(member_id)
    org = _load(state.get_state(f"consortium/org/{member['org']}")) or {}
    return member["org"], member["role"], org.get("kind", "")


def may_see_line_list(state: Scanner, member_id: str) -> bool:
    try:
        _org, role, kind = member_info(state, member_id)
    except KeyError:
        return False
    return kind == "cdc" and role in CDC_ROLES


def signals(state: Scanner, status: str | None = None, disease: str | None = None,
            limit: int = 1000) -> list[dict[str, Any]]:
    """Signals newest week first (summaries: no series)."""
    out = []
    for _key, raw in state.scan_state("signals/signal/", SCAN_LIMIT):
        s = orjson.loads(raw)
        if (status is None or s["status"] == status) and (disease is None or
                                                         s["disease"] == disease):
            out.append({k: v for k, v in s.items() if k not in ("series", "log")} |
                       {"log_entries": len(s["log"])})
    out.sort(key=lambda s: (s["week"], s["raised"]["height"]), reverse=True)
    return out[:limit]


def signal(state: Scanner, signal_id: str) -> dict[str, Any] | None:
    return _load(state.get_state(f"signals/signal/{signal_id}"))  # type: ignore[no-any-return]


def signal_districts(state: Scanner, sig: dict[str, Any]) -> list[str]:
    return list(sig["districts"]) or districts(state, sig["disease"])


def signal_line_list(state: Scanner, sig: dict[str, Any]) -> list[dict[str, Any]]:
    """The cases behind a signal: its districts and strata, in its week."""
    monday = week_monday(sig["week"])
    stratum = sig["stratum"]
    strata = Strata(stratum.get("age_band"), stratum.get("sex"))
    return line_list(state, sig["disease"], signal_districts(state, sig), monday,
                     monday + timedelta(days=6), strata)


def weeks_back(last_week: str, n_weeks: int) -> str:
    """The ISO week ``n_weeks - 1`` weeks before ``last_week`` (a span of ``n_weeks``)."""
    return iso_week(week_monday(last_week) - timedelta(weeks=n_weeks - 1))
