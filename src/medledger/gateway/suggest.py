"""``gateway profile suggest``: draft a source profile for a new hospital export.

Like OHDSI WhiteRabbit's scan, each column gets a value profile (non-empty share, distinct
values, the most frequent values with counts below 5 suppressed to "<5"); like Usagi, terms
get candidate mappings with scores. Columns are matched to data elements by header (a curated
list of header names in English and Chinese) and by what the values look like (resident IDs
that pass their check digit, mobile numbers, dates in the known formats, ICD-10 codes, numbers,
units). Nothing below an exact or curated hit is accepted: the draft lists such terms as
comments with their candidates, for a data steward to decide.
"""

from __future__ import annotations

import csv
import itertools
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medledger.gateway import icd10
from medledger.gateway.dates import parse_date
from medledger.gateway.errors import GatewayError, RowRejected
from medledger.gateway.identifiers import MOBILE_RE, normalise_rid, valid_rid
from medledger.gateway.sources import FileRejected, check_file
from medledger.gateway.terminology import DxMatch, LabMatch, Terminology
from medledger.gateway.text import normalise_term
from medledger.gateway.units import to_ucum

HEADERS: dict[str, tuple[str, ...]] = {
    "record_key": ("id", "record id", "dxid", "accession", "accessionno", "sample id",
                   "encounter dx id", "诊断流水号", "检验单号", "流水号", "单号"),
    "patient_id": ("nationalid", "national id", "id number", "id card", "resident id",
                   "身份证号", "身份证", "证件号码"),
    "mrn": ("mrn", "medical record number", "病历号", "住院号", "门诊号"),
    "name": ("name", "patient", "patientname", "patient name", "姓名", "患者姓名"),
    "phone": ("phone", "mobile", "tel", "telephone", "联系电话", "电话", "手机"),
    "address": ("address", "住址", "地址", "家庭住址"),
    "birth_date": ("dob", "birth", "birth date", "date of birth", "birthday", "出生日期"),
    "sex": ("sex", "gender", "性别"),
    "date": ("date", "visit date", "visitdate", "dx date", "collected date", "sampled",
             "collecteddate", "就诊日期", "采样日期", "诊断日期", "日期"),
    "dx_code": ("dxcode", "dx code", "icd", "icd10", "diagnosis code", "诊断编码", "疾病编码"),
    "dx_term": ("dxtext", "dx text", "diagnosis", "diagnosis name", "诊断名称", "诊断"),
    "test_code": ("loinc", "test code"),
    "test_name": ("test", "testname", "test name", "item", "检验项目", "项目名称", "项目"),
    "value": ("result", "value", "结果", "检验结果"),
    "unit": ("unit", "units", "单位"),
}
DATE_FORMATS = ("%Y-%m-%d", "%m/%d/%Y", "%d/%m/%Y", "%Y/%m/%d", "%Y%m%d", "zh", "excel-serial")
_NUM = re.compile(r"^[+-]?\d+(\.\d+)?$")


@dataclass
class Column:
    header: str
    filled: float = 0.0
    distinct: int = 0
    top: list[tuple[str, str]] = field(default_factory=list)
    element: str | None = None
    score: float = 0.0
    why: str = ""
    date_formats: list[str] = field(default_factory=list)


def _header_score(header: str) -> tuple[str | None, float]:
    h = normalise_term(header.replace("_", " "))
    squashed = h.replace(" ", "")
    for element, names in HEADERS.items():
        for n in names:
            if h == n or squashed == n.replace(" ", ""):
                return element, 1.0
    return None, 0.0


def _value_guess(values: list[str]) -> tuple[str | None, float, str, list[str]]:
    vals = [v for v in values if v]
    if not vals:
        return None, 0.0, "empty", []
    def share(pred: Any) -> float:
        return sum(1 for v in vals if pred(v)) / len(vals)
    rid = share(lambda v: valid_rid(normalise_rid(v)))
    if rid >= 0.8:
        return "patient_id", rid, f"{rid:.0%} valid resident IDs", []
    mob = share(lambda v: MOBILE_RE.search(v) is not None)
    if mob >= 0.8:
        return "phone", mob, f"{mob:.0%} mobile numbers", []
    fmts = []
    for fmt in DATE_FORMATS:
        if fmt == "excel-serial" and share(lambda v: _NUM.match(v) is not None) < 0.8:
            continue
        ok = 0
        for v in vals[:200]:
            try:
                parse_date(v, [fmt])
                ok += 1
            except RowRejected:
                pass
        if ok / min(len(vals), 200) >= 0.8:
            fmts.append(fmt)
    if fmts:
        return "date", 0.8, f"dates ({', '.join(fmts)})", fmts
    codes = share(lambda v: icd10.is_well_formed(icd10.normalise_code(v)))
    if codes >= 0.8:
        return "dx_code", codes, f"{codes:.0%} ICD-10-shaped codes", []
    units = share(lambda v: to_ucum(v) is not None)
    if units >= 0.8:
        return "unit", units, f"{units:.0%} known units", []
    nums = share(lambda v: _NUM.match(v) is not None)
    if nums >= 0.8:
        return "value", nums * 0.6, f"{nums:.0%} numbers", []
    return None, 0.0, "", []


@dataclass
class Suggestion:
    columns: list[Column]
    kind: str
    rows: int
    terms: list[dict[str, Any]]
    draft: str


def suggest(path: Path, encoding: str = "utf-8", delimiter: str | None = None,
            site: str = "new-site", sample: int = 5000) -> Suggestion:
    """Scan up to ``sample`` rows of ``path`` and draft a profile."""
    try:
        check_file(path, encoding)
    except FileRejected as exc:
        raise GatewayError(f"{path}: {exc.detail} (declare the file's encoding)") from None
    with path.open(encoding=encoding, newline="") as fh:
        head = fh.read(4096).lstrip("\ufeff")
        delim = delimiter or max(",\t;|", key=head.split("\n")[0].count)
        fh.seek(0)
        reader = csv.reader(fh, delimiter=delim)
        header = [h.lstrip("\ufeff").strip() for h in next(reader)]
        rows = list(itertools.islice(reader, sample))
    columns = []
    for i, h in enumerate(header):
        vals = [r[i].strip() if i < len(r) else "" for r in rows]
        counts = Counter(v for v in vals if v)
        col = Column(h, round(sum(1 for v in vals if v) / max(len(vals), 1), 3), len(counts),
                     [(v, str(c) if c >= 5 else "<5") for v, c in counts.most_common(5)])
        element, score = _header_score(h)
        guess, gscore, why, fmts = _value_guess(vals)
        if element is None and guess is not None:
            element, score = guess, gscore
        col.element, col.score, col.date_formats = element, round(score, 3), fmts
        col.why = "header" + (f"; values: {why}" if why else "") if score == 1.0 else why
        columns.append(col)
    _dedupe(columns)
    kind = "lab" if any(c.element == "value" for c in columns) else "diagnosis"
    terms = _terms(columns, rows, header, kind)
    distinct = {c.element or "": sorted({r[header.index(c.header)].strip() for r in rows
                                   if header.index(c.header) < len(r)} - {""})
                for c in columns if c.element in ("sex", "unit")}
    return Suggestion(columns, kind, len(rows), terms,
                      _draft(path, columns, kind, site, encoding, delim, terms, distinct))


def _dedupe(columns: list[Column]) -> None:
    """One column per element: the best-scored keeps it; ``date`` vs ``birth_date`` by name."""
    best: dict[str, Column] = {}
    for c in columns:
        if c.element is None:
            continue
        if c.element in best and best[c.element].score >= c.score:
            c.element, c.why = None, c.why + " (element taken by a better column)"
        else:
            if c.element in best:
                best[c.element].element = None
            best[c.element] = c


def _terms(columns: list[Column], rows: list[list[str]], header: list[str], kind: str
           ) -> list[dict[str, Any]]:
    element = "dx_term" if kind == "diagnosis" else "test_name"
    col = next((c for c in columns if c.element == element), None)
    if col is None:
        return []
    i = header.index(col.header)
    distinct = Counter(r[i].strip() for r in rows if i < len(r) and r[i].strip())
    t = Terminology()
    out = []
    for term, n in distinct.most_common():
        m: DxMatch | LabMatch
        if kind == "diagnosis":
            m = t.diagnosis(None, term)
            target = m.who_code
        else:
            m = t.lab(None, term)
            target = m.analyte.key if m.analyte else None
        out.append({"term": term, "rows": n if n >= 5 else "<5", "target": target,
                    "method": m.method, "accepted": target is not None,
                    "review": None if m.review is None else str(m.review),
                    "candidates": [{"target": c.target, "score": c.score}
                                   for c in m.candidates]})
    return out


def _value_sections(distinct: dict[str, list[str]]) -> list[str]:
    """``[values.sex]`` for sex codes the defaults do not know, ``[units]`` for unit
    spellings outside the alias table — as TODO lines, never filled in by guessing."""
    from medledger.gateway.standardize import SEX_DEFAULT

    out: list[str] = []
    sexes = [v for v in distinct.get("sex", []) if v.lower() not in SEX_DEFAULT]
    if sexes:
        out += ["", "[values.sex]  # codes the defaults do not know: fill in male/female/..."]
        out += [f'# "{v}" = "TODO"' for v in sexes[:20]]
    units = [v for v in distinct.get("unit", []) if to_ucum(v) is None]
    if units:
        out += ["", "[units]  # spellings outside the alias table: map each to a UCUM code"]
        out += [f'# "{v}" = "TODO"' for v in units[:20]]
    return out


def _draft(path: Path, columns: list[Column], kind: str, site: str, encoding: str,
           delim: str, terms: list[dict[str, Any]],
           distinct: dict[str, list[str]] | None = None) -> str:
    fmts = [f for c in columns if c.element in ("date", "birth_date") for f in c.date_formats]
    fmts = list(dict.fromkeys(fmts)) or ["%Y-%m-%d"]
    lines = [f"# Draft profile for {path.name} — suggested by `medledger gateway profile "
             "suggest`;", "# check every line before use. Scores: 1.0 = header match.",
             "[profile]", f'id = "{site}-{kind}"', 'version = "0.1"', f'site = "{site}"',
             'source_system = "TODO"', f'kind = "{kind}"',
             f'format = "{"tsv" if delim == chr(9) else "csv"}"', f'encoding = "{encoding}"',
             f"delimiter = {delim!r}".replace("'", '"'),
             "date_formats = [" + ", ".join(f'"{f}"' for f in fmts) + "]", "", "[columns]"]
    for c in columns:
        if c.element:
            lines.append(f'{c.element} = "{c.header}"  # score {c.score}: {c.why}')
        else:
            lines.append(f'# unmapped: "{c.header}" ({c.filled:.0%} filled, {c.distinct} '
                         "distinct)")
    lines += _value_sections(distinct or {})
    review = [t for t in terms if not t["accepted"]]
    if review:
        lines += ["", "# Terms NOT accepted (no exact or curated match) — decide them in the",
                  "# review queue or add curated synonyms under [terminology.*]:"]
        for t in review:
            cands = ", ".join(f"{c['target']} {c['score']:.2f}" for c in t["candidates"])
            lines.append(f"#   {t['term']!r}: {t['review']}" + (f" — candidates {cands}"
                                                                   if cands else ""))
    return "\n".join(lines) + "\n"
