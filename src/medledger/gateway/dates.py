"""Dates as hospitals write them: declared ``strptime`` formats, Chinese formats and
spreadsheet serial numbers.

A profile lists its formats in order; the first that parses wins. Two special names:

* ``"excel-serial"`` — a spreadsheet day number in the 1900 date system (day 1 = 1900-01-01,
  with the system's fictitious 1900-02-29 as day 60; so day n ≥ 61 is 1899-12-30 + n days).
  Serials 1..60 are refused as ambiguous.
* ``"zh"`` — 2023年5月6日, 2023年05月06日, 2023.5.6 and 2023/5/6.
* ``"hl7"`` — an HL7 v2 DTM (``YYYYMMDD[HHMM[SS[.S]]][+/-ZZZZ]``); the day is kept.
* ``"fhir"`` — a FHIR date or dateTime (``YYYY-MM-DD[Thh:mm:ss[.s](Z|±hh:mm)]``); the day is
  kept; partial dates (``YYYY``, ``YYYY-MM``) are refused.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import date, datetime, timedelta

from medledger.gateway.errors import Reason, RowRejected

EXCEL_EPOCH = date(1899, 12, 30)
_ZH = re.compile(r"^(\d{4})\s*[年./-]\s*(\d{1,2})\s*[月./-]\s*(\d{1,2})\s*日?$")
_HL7 = re.compile(r"^(\d{4})(\d{2})(\d{2})(\d{0,6})(\.\d+)?([+-]\d{4})?$")
_SERIAL = re.compile(r"^\d{2,6}(\.0+)?$")


def _excel(text: str) -> date | None:
    if not _SERIAL.match(text):
        return None
    n = int(float(text))
    if n <= 60:
        return None
    return EXCEL_EPOCH + timedelta(days=n)


def _zh(text: str) -> date | None:
    m = _ZH.match(text)
    if m is None:
        return None
    y, mo, d = (int(g) for g in m.groups())
    try:
        return date(y, mo, d)
    except ValueError:
        raise RowRejected(Reason.INVALID_DATE, f"{text!r} does not exist") from None


_NUMERIC_FMT = re.compile(r"^(%[Ymd]|[-/. ])+$")
_FAST: dict[str, re.Pattern[str] | None] = {}


def _fast(fmt: str) -> re.Pattern[str] | None:
    """A regex equivalent to ``strptime(fmt)`` for purely numeric day formats (3x faster)."""
    if fmt not in _FAST:
        ok = _NUMERIC_FMT.match(fmt) and all(f in fmt for f in ("%Y", "%m", "%d"))
        _FAST[fmt] = re.compile("^" + re.escape(fmt).replace("%Y", r"(?P<Y>\d{4})")
                                .replace("%m", r"(?P<m>\d{1,2})")
                                .replace("%d", r"(?P<d>\d{1,2})") + "$") if ok else None
    return _FAST[fmt]


def _numeric(text: str, rx: re.Pattern[str]) -> date | None:
    m = rx.match(text)
    if m is None:
        return None
    try:
        return date(int(m["Y"]), int(m["m"]), int(m["d"]))
    except ValueError:
        return None


_FHIR = re.compile(r"^(\d{4})-(\d{2})-(\d{2})(T\d{2}:\d{2}(:\d{2}(\.\d+)?)?"
                   r"(Z|[+-]\d{2}:\d{2})?)?$")


def _fhir(text: str) -> date | None:
    m = _FHIR.match(text)
    if m is None:
        return None
    try:
        return date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    except ValueError:
        raise RowRejected(Reason.INVALID_DATE, f"{text!r} does not exist") from None


def _hl7(text: str) -> date | None:
    m = _HL7.match(text)
    if m is None:
        return None
    try:
        return date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    except ValueError:
        raise RowRejected(Reason.INVALID_DATE, f"{text!r} does not exist") from None


_CACHE: dict[tuple[str, tuple[str, ...]], date] = {}


def parse_date(raw: object, formats: Sequence[str]) -> date:
    """The date ``raw`` denotes under the first matching format; ``RowRejected`` otherwise.

    ``raw`` may already be a ``date``/``datetime`` (xlsx cells) or a number (a serial).
    """
    if isinstance(raw, datetime):
        return raw.date()
    if isinstance(raw, date):
        return raw
    text = str(raw).strip()
    key = (text, tuple(formats))
    hit = _CACHE.get(key)
    if hit is None:
        hit = _parse(text, formats)
        if len(_CACHE) >= 50_000:
            _CACHE.clear()
        _CACHE[key] = hit
    return hit


def _parse(text: str, formats: Sequence[str]) -> date:
    if not text:
        raise RowRejected(Reason.MISSING_VALUE, "date is empty")
    for fmt in formats:
        if fmt == "excel-serial":
            hit = _excel(text)
        elif fmt == "zh":
            hit = _zh(text)
        elif fmt == "hl7":
            hit = _hl7(text)
        elif fmt == "fhir":
            hit = _fhir(text)
        elif fmt == "%Y-%m-%d" and len(text) == 10:
            try:
                hit = date.fromisoformat(text)
            except ValueError:
                hit = None
        elif (rx := _fast(fmt)) is not None:
            hit = _numeric(text, rx)
        else:
            try:
                hit = datetime.strptime(text, fmt).date()
            except ValueError:
                hit = None
        if hit is not None:
            if not 1900 <= hit.year <= 2100:
                raise RowRejected(Reason.INVALID_DATE, f"{text!r} is outside 1900..2100")
            return hit
    raise RowRejected(Reason.INVALID_DATE, f"{text!r} matches none of {list(formats)}")
