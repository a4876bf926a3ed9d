"""Synthetic microbiology exports: qualitative notifiable-pathogen results (ADR 0047).

Two dialects, beside the regular lab files of ``gateway.synth``:

* ``hosp-a/micro.csv`` — English, UTF-8: LOINC code on about half the rows, results written
  ``POS``, ``Positive``, ``NEG``, ``Detected``, ``Not detected``, ``Reactive``…;
* ``hosp-b/micro.tsv`` — Chinese headers and terms, GBK, no codes: ``阳性``, ``阳性（+）``,
  ``阴性``, ``检出``, ``未检出``, ``有反应性``….

Both carry the patient's address (a district for case-report drafting, ``ADDRESS_DISTRICTS``).
A few rows have a result no value map holds (``weakly positive``, ``弱阳性``, ``可疑``): truth
``quarantined`` / ``unknown_result``.

``micro_files(g, n)`` gives ``n`` results per hospital for persons the generator's hospitals see,
drawn from their own random stream (``synth.generate(pathogen=n)``; with ``n = 0`` nothing is
written and the other files stay byte-identical). ``outbreak_exports`` writes a
Shigella outbreak for the demo: ``cases`` children of one city with a positive stool culture
at ``hosp-a`` on given days, a few negative cultures, and the first ``shared`` children cultured
again at ``hosp-b`` a day later.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

from medledger.gateway.synth import CITIES, Generator, Person, _File, _write_delimited, make_rid

__all__ = ["MICRO_PROFILES", "PATHOGENS", "micro_files", "outbreak_exports", "write_micro"]

# test key → (LOINC, English name, Chinese name); codes as in ``loinc.PATHOGEN_TESTS``
PATHOGENS: dict[str, tuple[str, str, str]] = {
    "sars-cov-2-rna": ("94500-6", "SARS-CoV-2 RNA", "新冠病毒核酸"),
    "shigella-culture": ("82300-5", "Shigella culture", "志贺菌培养"),
    "hbsag": ("5196-1", "HBsAg", "乙肝表面抗原"),
}
POSITIVE, NEGATIVE = "10828004", "260385009"
DETECTED, NOT_DETECTED = "260373001", "260415000"
REACTIVE, NON_REACTIVE = "11214006", "131194007"
# test → ((positive code, negative code), ...): how each kind of test reports
RESULT_CODES: dict[str, tuple[tuple[str, str], ...]] = {
    "sars-cov-2-rna": ((DETECTED, NOT_DETECTED), (POSITIVE, NEGATIVE)),
    "shigella-culture": ((POSITIVE, NEGATIVE),),
    "hbsag": ((REACTIVE, NON_REACTIVE), (POSITIVE, NEGATIVE)),
}
SPELLINGS: dict[str, dict[str, tuple[str, ...]]] = {
    "en": {POSITIVE: ("POS", "Positive", "+"), NEGATIVE: ("NEG", "Negative", "-"),
           DETECTED: ("Detected", "DETECTED"), NOT_DETECTED: ("Not detected", "ND"),
           REACTIVE: ("Reactive",), NON_REACTIVE: ("Non-reactive", "NR")},
    "zh": {POSITIVE: ("阳性", "阳性（+）"), NEGATIVE: ("阴性", "阴性（-）"),
           DETECTED: ("检出",), NOT_DETECTED: ("未检出",), REACTIVE: ("有反应性",),
           NON_REACTIVE: ("无反应性",)},
}
UNKNOWN = {"en": ("weakly positive", "equivocal"), "zh": ("弱阳性", "可疑")}

MICRO_PROFILES = {
    "hosp-a/micro.csv": """\
[profile]
id = "hosp-a-micro"
version = "1.0"
site = "hosp-a"
source_system = "Riverside Micro 2"
kind = "lab"
format = "csv"
encoding = "utf-8"
date_formats = ["%m/%d/%Y"]

[columns]
record_key = "AccessionNo"
patient_id = "NationalID"
name = "PatientName"
address = "Address"
birth_date = "DOB"
sex = "Sex"
date = "CollectedDate"
test_code = "LOINC"
test_name = "TestName"
value = "Result"
""",
    "hosp-b/micro.tsv": """\
[profile]
id = "hosp-b-micro"
version = "2026.1"
site = "hosp-b"
source_system = "Lakeside LIS micro"
kind = "lab"
format = "tsv"
encoding = "gbk"
date_formats = ["zh"]

[columns]
record_key = "标本号"
patient_id = "身份证号"
name = "姓名"
address = "住址"
birth_date = "出生日期"
sex = "性别"
date = "采样日期"
test_name = "检验项目"
value = "结果"
""",
}
Render = Callable[[Person, str, date, str, str], list[str]]


def _render_a(rng: random.Random) -> Render:
    def render(p: Person, key: str, when: date, test: str, result: str) -> list[str]:
        loinc, en, _ = PATHOGENS[test]
        return [key, p.rid, p.en, f"{rng.randrange(1, 300)} {CITIES[p.city][0]} Road",
                p.birth.strftime("%m/%d/%Y"), "F" if p.female else "M",
                when.strftime("%m/%d/%Y"), loinc if rng.random() < 0.5 else "", en, result]
    return render


def _render_b(rng: random.Random) -> Render:
    def render(p: Person, key: str, when: date, test: str, result: str) -> list[str]:
        return [key, p.rid, p.zh, f"{CITIES[p.city][1]}市解放路{p.pid[-3:]}号",
                f"{p.birth.year}年{p.birth.month:02d}月{p.birth.day:02d}日",
                "女" if p.female else "男", f"{when.year}年{when.month}月{when.day}日",
                PATHOGENS[test][2], result]
    return render


def _file(site: str) -> _File:
    if site == "hosp-a":
        return _File("hosp-a/micro.csv", ["AccessionNo", "NationalID", "PatientName", "Address",
                                          "DOB", "Sex", "CollectedDate", "LOINC", "TestName",
                                          "Result"], "en")
    return _File("hosp-b/micro.tsv", ["标本号", "身份证号", "姓名", "住址", "出生日期", "性别",
                                      "采样日期", "检验项目", "结果"], "zh")


def _add(f: _File, rng: random.Random, render: Render, p: Person, key: str, when: date,
         test: str, positive: bool) -> None:
    pos, neg = rng.choice(RESULT_CODES[test])
    code = pos if positive else neg
    text = rng.choice(SPELLINGS[f.lang][code])
    f.add(render(p, key, when, test, text), "mapped", "loinc", PATHOGENS[test][0], "", code,
          person=p.pid)


def micro_files(g: Generator, n: int, seed: int = 53) -> list[_File]:
    """``n`` qualitative results at hosp-a and at hosp-b (about 30 % positive), one in ten
    followed by a result no map holds; from ``random.Random(seed)`` only."""
    rng = random.Random(seed)
    out = []
    for site, render in (("hosp-a", _render_a(rng)), ("hosp-b", _render_b(rng))):
        f = _file(site)
        for i in range(n):
            p = rng.choice(g.seen[site])
            key = f"{site[-1].upper()}MIC{i + 1:06d}"
            when = date(2022, 1, 1) + timedelta(days=rng.randrange(0, 900))
            test = rng.choice(list(PATHOGENS))
            _add(f, rng, render, p, key, when, test, rng.random() < 0.3)
            if rng.random() < 0.1:
                row = render(p, f"{key}U", when, test, rng.choice(UNKNOWN[f.lang]))
                f.add(row, "quarantined", reason="unknown_result")
        out.append(f)
    return out


def write_micro(out: Path, f: _File) -> None:
    """Write one microbiology file and its profile under ``out``."""
    (out / f.name).parent.mkdir(parents=True, exist_ok=True)
    if f.name.endswith(".tsv"):
        _write_delimited(out / f.name, f, "\t", "gbk", bom=False)
    else:
        _write_delimited(out / f.name, f, ",", "utf-8", bom=False)
    (out / (f.name + ".toml")).write_text(MICRO_PROFILES[f.name], encoding="utf-8")


def _children(rng: random.Random, n: int, first: date, city: int) -> list[Person]:
    out: list[Person] = []
    seen: set[str] = set()
    while len(out) < n:
        female = rng.random() < 0.5
        birth = first - timedelta(days=rng.randrange(365 * 6, 365 * 13))
        rid = make_rid(rng, birth, female)
        if rid in seen:
            continue
        seen.add(rid)
        i = len(out) + 1
        out.append(Person(f"K{i:05d}", rid, f"Child {i}", f"儿童{i}", "", birth, female, city))
    return out


def outbreak_exports(out: Path, days: list[date], *, city: int = 0, shared: int = 5,
                     negatives: int = 4, seed: int = 17) -> list[str]:
    """A Shigella outbreak among children living in ``CITIES[city]``: one positive stool
    culture at hosp-a per day in ``days`` (one child each), ``negatives`` negative cultures of
    other children, and the first ``shared`` children cultured positive again at hosp-b the
    next day. Writes ``hosp-a/micro.csv`` and ``hosp-b/micro.tsv`` with their profiles;
    returns their names."""
    rng = random.Random(seed)
    kids = _children(rng, len(days) + negatives, min(days), city)
    a, b = _file("hosp-a"), _file("hosp-b")
    render_a, render_b = _render_a(rng), _render_b(rng)
    for i, (p, when) in enumerate(zip(kids, days, strict=False), 1):
        _add(a, rng, render_a, p, f"AOUT{i:05d}", when, "shigella-culture", True)
    for i, p in enumerate(kids[len(days):], 1):
        _add(a, rng, render_a, p, f"ANEG{i:05d}", rng.choice(days), "shigella-culture", False)
    for i, (p, when) in enumerate(zip(kids[:shared], days, strict=False), 1):
        _add(b, rng, render_b, p, f"BOUT{i:05d}", when + timedelta(days=1),
             "shigella-culture", True)
    for f in (a, b):
        write_micro(out, f)
    return [a.name, b.name]
