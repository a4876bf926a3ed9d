"""Synthetic multi-hospital exports with truth files, for tests, evaluation and the demo.

Three hospitals with different dialects (all data invented here, seeded and reproducible):

* ``hosp-a`` Riverside — English, UTF-8 with BOM, comma CSV, US dates (MM/DD/YYYY), WHO codes
  written carelessly (``e11.9``), abbreviations (HTN, T2DM), US lab units (mg/dL, g/dL).
* ``hosp-b`` Lakeside — Chinese headers and terms, **GBK**, tab-separated, national extension
  codes (E11.900, I10.x00), Chinese dates (2023年5月6日), SI units, Chinese test names.
* ``hosp-c`` Hillview — a newer system: mixed English/Chinese terms without codes, semicolon
  CSV, spreadsheet serial dates, resident IDs with spaces and lower-case ``x``; labs as
  ``.xlsx`` with lab abbreviations and mixed units; plus a legacy re-export that is GBK while
  the profile declares UTF-8 (quarantined whole).

Persons are shared across hospitals (same resident ID, different name spellings and phone
formats) for linkage. Defects are injected with the reason the gateway must give. Output::

    DIR/<site>/<file>, DIR/<site>/<file>.toml (profiles), DIR/truth.csv, DIR/linkage.csv,
    DIR/hosp-a/adt-oru.hl7 (HL7 v2 ADT^A01 + ORU^R01; truth rows ``MESSAGE:SEGMENT``)

``truth.csv`` has the columns the issue fixes: source_file, row, expected_outcome,
expected_code_system, expected_code, expected_unit, expected_value, expected_reason, language.

Notifiable diseases: the clean diagnosis rows already include COVID-19 (``U07.1``) and chronic
hepatitis B (``B18.1``), two notifiable codes of the gateway's ICD-10 table, at random dates.
``notifiable=N`` adds, after the regular rows and from a separate random stream (so the other
rows and files stay byte-identical), N persons seen at both ``hosp-a`` and ``hosp-b`` with a
COVID-19 diagnosis at ``hosp-a`` and the same diagnosis at ``hosp-b`` 1–5 days later: one case
reported by two hospitals, for case-report drafting (docs/surveillance.md). Addresses name the
person's city; ``ADDRESS_DISTRICTS`` maps them to district codes. ``pathogen=N`` adds, from
its own random stream, N qualitative notifiable-pathogen results per hospital in two
microbiology exports (``synth_micro``: SARS-CoV-2 RNA, Shigella culture, HBsAg; results
written ``POS``, ``Detected``, ``阳性``…; a few in no value map, truth ``unknown_result``).

More hospitals: ``hospitals=N`` (N > 3) adds ``hosp-d``, ``hosp-e``… Each reuses a dialect of the
first three in turn (``hosp-d`` writes like ``hosp-a``, ``hosp-e`` like ``hosp-b``, ``hosp-f``
like ``hosp-c`` without a legacy file; profiles name the new site) and sees its own 60% of the
same persons, drawn with everything else of that hospital from its own random stream
(``seed + 300 + i``), so the first three hospitals' files, truth and linkage rows stay
byte-identical; the new hospitals' rows are appended to ``truth.csv`` and ``linkage.csv``.
Research tests use it for studies over four or more sites (docs/research.md).
"""

from __future__ import annotations

import csv
import io
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

TRUTH_COLUMNS = ("source_file", "row", "expected_outcome", "expected_code_system",
                 "expected_code", "expected_unit", "expected_value", "expected_reason",
                 "language")
_W = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)

SURNAMES = [("Wang", "王"), ("Li", "李"), ("Zhang", "张"), ("Liu", "刘"), ("Chen", "陈"),
            ("Yang", "杨"), ("Zhao", "赵"), ("Huang", "黄"), ("Zhou", "周"), ("Wu", "吴")]
GIVEN = [("Wei", "伟"), ("Fang", "芳"), ("Min", "敏"), ("Jing", "静"), ("Lei", "磊"),
         ("Yang", "洋"), ("Yong", "勇"), ("Jun", "军"), ("Jie", "杰"), ("Tao", "涛"),
         ("Ming", "明"), ("Xia", "霞"), ("Hua", "华"), ("Ping", "平"), ("Gang", "刚")]
CITIES = [("Riverside", "江城"), ("Lakeside", "湖滨"), ("Hillview", "山景")]
# address text → district code, for case-report drafting (substring match, first wins)
ADDRESS_DISTRICTS = (("Riverside", "110101"), ("江城", "110101"), ("Lakeside", "110102"),
                     ("湖滨", "110102"), ("Hillview", "110106"), ("山景", "110106"))
NOTIFIABLE_CODE = "U07.1"   # COVID-19: notifiable, in the gateway's ICD-10 table
DIALECTS = ("hosp-a", "hosp-b", "hosp-c")  # the hospitals whose export formats exist


def site_names(hospitals: int = 3) -> list[str]:
    """``hosp-a`` … the ``hospitals``-th (at most 26); the first three are ``DIALECTS``."""
    if not 3 <= hospitals <= 26:
        raise ValueError(f"got {hospitals} hospitals, want 3..26")
    return [f"hosp-{chr(ord('a') + i)}" for i in range(hospitals)]


def dialect_of(site: str) -> str:
    """The hospital whose export format ``site`` writes (itself for the first three)."""
    i = ord(site[-1]) - ord("a")
    return DIALECTS[i % len(DIALECTS)]


def base_file(name: str) -> str:
    """A file name (``SITE/file``) as its dialect's hospital names it (``PROFILES`` key)."""
    site, _, rest = name.partition("/")
    return f"{dialect_of(site)}/{rest}"


def profile_text(name: str) -> str:
    """The profile of file ``name``: its dialect's, naming ``name``'s own site."""
    site = name.partition("/")[0]
    base = base_file(name)
    text = PROFILES[base]
    if base == name:
        return text
    old = dialect_of(site)
    return text.replace(f'site = "{old}"', f'site = "{site}"').replace(
        f'id = "{old}-', f'id = "{site}-')

# WHO code: (hosp-a English variants, hosp-b national code or None, Chinese variants)
DX: dict[str, tuple[tuple[str, ...], str | None, tuple[str, ...]]] = {
    "I10": (("Essential (primary) hypertension", "HTN", "Hypertension"), "I10.x00",
            ("原发性高血压", "高血压", "高血压病")),
    "E11.9": (("Type 2 diabetes mellitus without complications", "T2DM", "Diabetes mellitus "
               "type II"), "E11.900", ("2型糖尿病", "二型糖尿病", "Ⅱ型糖尿病")),
    "I25.1": (("Atherosclerotic heart disease", "CAD", "Coronary heart disease"), "I25.103",
              ("冠心病", "冠状动脉粥样硬化性心脏病")),
    "J44.9": (("Chronic obstructive pulmonary disease, unspecified", "COPD"), "J44.900",
              ("慢阻肺", "慢性阻塞性肺疾病")),
    "I63.9": (("Cerebral infarction, unspecified", "Ischemic stroke"), "I63.900",
              ("脑梗死", "脑梗")),
    "J18.9": (("Pneumonia, unspecified", "Pneumonia", "CAP"), "J18.900", ("肺炎",)),
    "N18.9": (("Chronic kidney disease, unspecified", "CKD"), "N18.900",
              ("慢性肾脏病", "慢性肾病")),
    "E78.5": (("Hyperlipidaemia, unspecified", "Hyperlipidemia"), "E78.500",
              ("高脂血症", "高血脂")),
    "I50.9": (("Heart failure, unspecified", "CHF"), "I50.900", ("心力衰竭", "心衰")),
    "I48.9": (("Atrial fibrillation", "AFib"), "I48.x01", ("房颤", "心房颤动")),
    "K35.8": (("Acute appendicitis",), "K35.800", ("急性阑尾炎",)),
    "J45.9": (("Asthma, unspecified", "Asthma"), None, ("哮喘", "支气管哮喘")),
    "U07.1": (("COVID-19, virus identified", "COVID-19"), None, ("新冠肺炎",)),
    "B18.1": (("Chronic viral hepatitis B without delta-agent", "Chronic hepatitis B"), None,
              ("慢性乙肝", "慢性乙型病毒性肝炎")),
    "D64.9": (("Anaemia, unspecified", "Anemia"), None, ("贫血",)),
    "E03.9": (("Hypothyroidism, unspecified", "Hypothyroidism"), None, ("甲减",)),
}
# Spellings a steward would map but that no curated table holds (for --unseen-share): they
# measure how the policy behaves on vocabulary it has never seen (→ review, never a guess).
UNSEEN: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "I10": (("hypertension, essential", "HBP", "raised blood pressure"),
            ("高血压（原发性）", "原发性高血压病")),
    "E11.9": (("diabetes type 2", "DM type II", "adult-onset diabetes"),
              ("2型糖尿病（无并发症）", "成人型糖尿病")),
    "I25.1": (("coronary atherosclerosis", "ASHD"), ("冠状动脉硬化性心脏病", "冠脉粥样硬化")),
    "J44.9": (("chronic obstructive lung disease", "COLD"), ("慢性阻塞性肺部疾病",)),
    "I50.9": (("cardiac failure", "heart failure NOS"), ("心功能不全", "心力衰竭（未特指）")),
    "I48.9": (("atrial fib", "auricular fibrillation"), ("心房纤颤", "房颤（阵发性）")),
    "E78.5": (("hyperlipemia", "lipid disorder"), ("高脂血", "高脂血症（混合型）")),
    "I63.9": (("cerebral infarct", "brain infarction"), ("脑血管梗死", "缺血性脑梗死")),
}
REVIEW_EN = ("diabetis melitus type 2", "hypertensoin", "chronic renal failure",
             "heart attack", "sugar disease")
REVIEW_ZH = ("糖尿病肾病三期", "高血压性肾损害", "慢性胃窦炎伴糜烂")
TCM = ("消渴病", "胸痹心痛", "气虚血瘀证", "肝郁脾虚证", "眩晕病", "不寐")

# analyte: (LOINC, canonical unit, typical canonical value range, decimals,
#           [(source unit, factor source→canonical, offset)], EN name, ZH name, abbreviation)
LABS: dict[str, tuple[str, str, tuple[float, float], int, list[tuple[str, float, float]],
                      str, str, str]] = {
    "glucose": ("14749-6", "mmol/L", (3.5, 15.0), 2, [("mg/dL", 0.0555, 0.0)], "Glucose",
                "血糖", "GLU"),
    "creatinine": ("14682-9", "umol/L", (45.0, 400.0), 1, [("mg/dL", 88.4, 0.0)],
                   "Creatinine", "肌酐", "CREA"),
    "cholesterol": ("14647-2", "mmol/L", (3.0, 8.0), 2, [("mg/dL", 0.02586, 0.0)],
                    "Cholesterol, Total", "总胆固醇", "TC"),
    "hemoglobin": ("718-7", "g/L", (90.0, 170.0), 1, [("g/dL", 10.0, 0.0)], "Hemoglobin",
                   "血红蛋白", "HGB"),
    "potassium": ("2823-3", "mmol/L", (3.2, 5.4), 2, [("mEq/L", 1.0, 0.0)], "Potassium",
                  "血钾", "K"),
    "sodium": ("2951-2", "mmol/L", (130.0, 148.0), 1, [("mEq/L", 1.0, 0.0)], "Sodium", "血钠",
               "NA"),
    "hba1c": ("4548-4", "%", (4.8, 11.0), 1, [("mmol/mol", 0.09148, 2.152)], "Hemoglobin A1c",
              "糖化血红蛋白", "HbA1c"),
    "wbc": ("6690-2", "10*9/L", (3.5, 15.0), 2, [("10^3/uL", 1.0, 0.0)], "WBC", "白细胞计数",
            "WBC"),
    "alt": ("1742-6", "U/L", (8.0, 120.0), 0, [("IU/L", 1.0, 0.0)], "ALT", "谷丙转氨酶",
            "ALT"),
}

PROFILES = {
    "hosp-a/diagnoses.csv": """\
[profile]
id = "hosp-a-diagnoses"
version = "1.0"
site = "hosp-a"
source_system = "Riverside HIS 7"
kind = "diagnosis"
format = "csv"
encoding = "utf-8"
date_formats = ["%m/%d/%Y", "%Y-%m-%d"]

[columns]
record_key = "DxID"
patient_id = "NationalID"
mrn = "MRN"
name = "PatientName"
phone = "Phone"
address = "Address"
birth_date = "DOB"
sex = "Sex"
date = "VisitDate"
dx_code = "DxCode"
dx_term = "DxText"
""",
    "hosp-a/labs.csv": """\
[profile]
id = "hosp-a-labs"
version = "1.0"
site = "hosp-a"
source_system = "Riverside LIS 3"
kind = "lab"
format = "csv"
encoding = "utf-8"
date_formats = ["%m/%d/%Y"]

[columns]
record_key = "AccessionNo"
patient_id = "NationalID"
mrn = "MRN"
name = "PatientName"
birth_date = "DOB"
sex = "Sex"
date = "CollectedDate"
test_name = "TestName"
value = "Result"
unit = "Units"

[terminology.labs]
"Cholesterol, Total" = "cholesterol"
"Hemoglobin A1c" = "hba1c"
""",
    "hosp-b/diagnoses.tsv": """\
[profile]
id = "hosp-b-diagnoses"
version = "2026.1"
site = "hosp-b"
source_system = "Lakeside EMR"
kind = "diagnosis"
format = "tsv"
encoding = "gbk"
date_formats = ["zh"]

[columns]
record_key = "诊断流水号"
patient_id = "身份证号"
name = "姓名"
phone = "联系电话"
address = "住址"
birth_date = "出生日期"
sex = "性别"
date = "就诊日期"
dx_code = "诊断编码"
dx_term = "诊断名称"
""",
    "hosp-b/labs.tsv": """\
[profile]
id = "hosp-b-labs"
version = "2026.1"
site = "hosp-b"
source_system = "Lakeside LIS"
kind = "lab"
format = "tsv"
encoding = "gbk"
date_formats = ["zh"]

[columns]
record_key = "检验单号"
patient_id = "身份证号"
name = "姓名"
sex = "性别"
date = "采样日期"
test_name = "检验项目"
value = "结果"
unit = "单位"
""",
    "hosp-c/diagnoses.csv": """\
[profile]
id = "hosp-c-diagnoses"
version = "3.2"
site = "hosp-c"
source_system = "Hillview CIS"
kind = "diagnosis"
format = "csv"
encoding = "utf-8"
delimiter = ";"
date_formats = ["excel-serial", "%Y-%m-%d"]

[columns]
record_key = "encounter_dx_id"
patient_id = "id_number"
name = "patient"
phone = "mobile"
birth_date = "birth"
sex = "gender"
date = "dx_date"
dx_term = "diagnosis"

[values.sex]
"1" = "male"
"2" = "female"

[terminology.diagnoses]
"DM-II" = "E11.9"
"高血压3级" = "I10"
"慢阻肺急性加重" = "J44.9"
""",
    "hosp-c/labs.xlsx": """\
[profile]
id = "hosp-c-labs"
version = "3.2"
site = "hosp-c"
source_system = "Hillview LIS"
kind = "lab"
format = "xlsx"
date_formats = ["excel-serial", "%Y-%m-%d"]

[columns]
record_key = "sample_id"
patient_id = "id_number"
name = "patient"
sex = "gender"
date = "sampled"
test_name = "item"
value = "result"
unit = "unit"

[values.sex]
"1" = "male"
"2" = "female"
""",
}
PROFILES["hosp-c/diagnoses-legacy.csv"] = PROFILES["hosp-c/diagnoses.csv"]


def make_rid(rng: random.Random, birth: date, female: bool) -> str:
    region = rng.choice(["110105", "310104", "440106", "330106", "510107"])
    seq = rng.randrange(0, 99) * 10 + (rng.choice([0, 2, 4, 6, 8]) if female else
                                       rng.choice([1, 3, 5, 7, 9]))
    body = f"{region}{birth:%Y%m%d}{seq:03d}"
    return body + "10X98765432"[sum(int(c) * w for c, w in zip(body, _W, strict=True)) % 11]


@dataclass
class Person:
    pid: str
    rid: str
    en: str
    zh: str
    phone: str
    birth: date
    female: bool
    city: int


def _people(rng: random.Random, n: int) -> list[Person]:
    out: list[Person] = []
    seen: set[str] = set()
    while len(out) < n:
        female = rng.random() < 0.5
        birth = date(1940, 1, 1) + timedelta(days=rng.randrange(0, 365 * 60))
        rid = make_rid(rng, birth, female)
        if rid in seen:
            continue
        seen.add(rid)
        s, g = rng.choice(SURNAMES), rng.choice(GIVEN)
        phone = f"1{rng.choice('3589')}{rng.randrange(10**8, 10**9)}"
        out.append(Person(f"P{len(out) + 1:05d}", rid, f"{s[0]} {g[0]}", s[1] + g[1], phone,
                          birth, female, rng.randrange(3)))
    return out


class _File:
    """Rows of one synthetic file, plus its truth and linkage lines."""

    def __init__(self, name: str, header: list[str], lang: str) -> None:
        self.name, self.header, self.lang = name, header, lang
        self.rows: list[list[str]] = []
        self.truth: list[list[str]] = []
        self.link: list[list[str]] = []
        self.value_col = self.unit_col = ""

    def add(self, row: list[str], outcome: str, system: str = "", code: str = "",
            unit: str = "", value: str = "", reason: str = "", lang: str | None = None,
            person: str | None = None) -> None:
        self.rows.append(row)
        n = str(len(self.rows))
        self.truth.append([self.name, n, outcome, system, code, unit, value, reason,
                           lang or self.lang])
        if person is not None and outcome == "mapped":
            self.link.append([self.name, n, person])


def _fmt_value(v: float, decimals: int) -> str:
    return f"{v:.{decimals}f}"


class Generator:
    def __init__(self, seed: int = 7, persons: int = 300, rows: int = 400,
                 unseen: float = 0.0, notifiable: int = 0, hospitals: int = 3) -> None:
        self.rng = random.Random(seed)
        self.unseen = unseen
        self.unseen_rng = random.Random(seed + 99)   # separate: unseen=0 leaves files as before
        self.people = _people(self.rng, persons)
        self.rows = rows
        # every hospital sees 60% of persons; overlaps give shared patients
        self.seen = {h: self.rng.sample(self.people, int(persons * 0.6))
                     for h in ("hosp-a", "hosp-b", "hosp-c")}
        self.notifiable_rng = random.Random(seed + 71)  # separate, like unseen_rng
        self.cases = self._shared_cases(notifiable) if notifiable else []
        self.extra_rng: dict[str, random.Random] = {}  # hosp-d…: one stream each
        for i, site in enumerate(site_names(hospitals)[3:], 3):
            rng = self.extra_rng[site] = random.Random(seed + 300 + i)
            self.seen[site] = rng.sample(self.people, int(persons * 0.6))

    def extra_files(self) -> list[_File]:
        """The exports of the hospitals after the first three, each in its dialect and from
        its own random stream (the main stream is left where it was)."""
        make = {"hosp-a": (self.hosp_a_dx, self.hosp_a_labs),
                "hosp-b": (self.hosp_b_dx, self.hosp_b_labs),
                "hosp-c": (lambda s: self.hosp_c_dx(f"{s}/diagnoses.csv"), self.hosp_c_labs)}
        out: list[_File] = []
        saved = self.rng
        try:
            for site, rng in self.extra_rng.items():
                self.rng = rng
                out += [f(site) for f in make[dialect_of(site)]]
        finally:
            self.rng = saved
        return out

    def _shared_cases(self, n: int) -> list[tuple[Person, date, date]]:
        """``n`` persons seen at hosp-a and hosp-b, with hosp-a's and hosp-b's diagnosis date."""
        rng = self.notifiable_rng
        b = {p.pid for p in self.seen["hosp-b"]}
        shared = sorted((p for p in self.seen["hosp-a"] if p.pid in b), key=lambda p: p.pid)
        out = []
        for p in rng.sample(shared, min(n, len(shared))):
            first = date(2022, 1, 1) + timedelta(days=rng.randrange(0, 890))
            out.append((p, first, first + timedelta(days=rng.randrange(1, 6))))
        return out

    def _notifiable_rows(self, site: str, f: _File, render: Callable[..., list[str]],
                         term_for: Callable[[str], tuple[str, str, str]]) -> None:
        """The shared notifiable cases' rows of ``site`` (drawn from ``notifiable_rng``)."""
        saved, self.rng = self.rng, self.notifiable_rng
        try:
            for i, (p, first, second) in enumerate(self.cases, 1):
                code, term, lang = term_for(NOTIFIABLE_CODE)
                when = first if site == "hosp-a" else second
                f.add(render(p, f"{site[-1].upper()}NTF{i:04d}", code, when, term), "mapped",
                      "icd10", NOTIFIABLE_CODE, lang=lang, person=p.pid)
        finally:
            self.rng = saved

    def visit(self) -> date:
        return date(2022, 1, 1) + timedelta(days=self.rng.randrange(0, 900))

    # -- diagnoses -------------------------------------------------------------------------
    def _dx_rows(self, site: str, f: _File, render: Callable[[Person, str, str, date, str],
                 list[str]], term_for: Callable[[str], tuple[str, str, str]]) -> None:
        rng = self.rng
        for i in range(self.rows):
            p = rng.choice(self.seen[site])
            key = f"{site[-1].upper()}DX{i + 1:06d}"
            who = rng.choice(list(DX))
            code, term, lang = term_for(who)
            if self.unseen and who in UNSEEN and self.unseen_rng.random() < self.unseen:
                en, zh = UNSEEN[who]
                code, term = "", self.unseen_rng.choice(zh if lang == "zh" else en)
            f.add(render(p, key, code, self.visit(), term), "mapped", "icd10", who, lang=lang,
                  person=p.pid)
            roll = rng.random()
            if roll < 0.03:      # exact duplicate row
                f.add(list(f.rows[-1]), "duplicate", lang=lang)
            elif roll < 0.06:    # review: misspelling / TCM / unknown term
                p = rng.choice(self.seen[site])
                kind = rng.random()
                if f.lang == "en" or (f.lang == "mixed" and kind < 0.5):
                    t, lg, reason = rng.choice(REVIEW_EN), "en", "no_exact_match"
                elif kind < 0.75:
                    t, lg, reason = rng.choice(TCM), "zh", "no_standard_equivalent"
                else:
                    t, lg, reason = rng.choice(REVIEW_ZH), "zh", "no_exact_match"
                f.add(render(p, f"{key}R", "", self.visit(), t), "review", reason=reason,
                      lang=lg)
            elif roll < 0.11:    # injected defect
                self._dx_defect(site, f, render, term_for, key)

    def _dx_defect(self, site: str, f: _File, render: Callable[..., list[str]],
                   term_for: Callable[[str], tuple[str, str, str]], key: str) -> None:
        rng = self.rng
        p = rng.choice(self.seen[site])
        who = rng.choice(list(DX))
        code, term, lang = term_for(who)
        kind = rng.choice(["date", "key", "rid", "empty", "parse", "code"])
        if kind == "code" and not code:
            kind = "empty"
        when: object = self.visit()
        if kind == "date":
            when = "bad"
        row = render(p, f"{key}D", code, when, term)
        reason = {"date": "invalid_date", "key": "missing_key", "rid": "invalid_identifier",
                  "empty": "missing_value", "parse": "parse", "code": "unknown_code"}[kind]
        if kind == "key":
            row[0] = ""
        elif kind == "rid":
            row[1] = _break_rid(row[1])
        elif kind == "empty":
            row = render(p, f"{key}D", "", self.visit(), "")
        elif kind == "parse":
            row = row[:-2]
        elif kind == "code":
            row = render(p, f"{key}D", "ZZ" + code[:1], self.visit(), term)
        f.add(row, "quarantined", reason=reason, lang=lang)

    def hosp_a_dx(self, site: str = "hosp-a") -> _File:
        f = _File(f"{site}/diagnoses.csv", ["DxID", "NationalID", "MRN", "PatientName", "Phone",
                                           "Address", "DOB", "Sex", "VisitDate", "DxCode",
                                           "DxText"], "en")

        def render(p: Person, key: str, code: str, when: object, term: str) -> list[str]:
            w = when.strftime("%m/%d/%Y") if isinstance(when, date) else "02/30/2023"
            return [key, p.rid, f"{site[-1].upper()}{p.pid[1:]}", p.en, f"+86 {p.phone}",
                    f"{self.rng.randrange(1, 300)} {CITIES[p.city][0]} Road",
                    p.birth.strftime("%m/%d/%Y"), "F" if p.female else "M", w, code, term]

        def term_for(who: str) -> tuple[str, str, str]:
            en = DX[who][0]
            if self.rng.random() < 0.5:
                return self.rng.choice([who, who.lower(), f" {who} "]), en[0], "en"
            return "", self.rng.choice(en), "en"

        self._dx_rows(site, f, render, term_for)
        if site in DIALECTS:
            self._notifiable_rows(site, f, render, term_for)
        return f

    def hosp_b_dx(self, site: str = "hosp-b") -> _File:
        f = _File(f"{site}/diagnoses.tsv", ["诊断流水号", "身份证号", "姓名", "联系电话", "住址",
                                           "出生日期", "性别", "就诊日期", "诊断编码", "诊断名称"],
                  "zh")

        def render(p: Person, key: str, code: str, when: object, term: str) -> list[str]:
            w = f"{when.year}年{when.month}月{when.day}日" if isinstance(when, date) else \
                "2023年2月30日"
            return [key, p.rid, p.zh, p.phone, f"{CITIES[p.city][1]}市解放路{p.pid[-3:]}号",
                    f"{p.birth.year}年{p.birth.month:02d}月{p.birth.day:02d}日",
                    "女" if p.female else "男", w, code, term]

        def term_for(who: str) -> tuple[str, str, str]:
            nat, zh = DX[who][1], DX[who][2]
            if nat and self.rng.random() < 0.6:
                return nat, zh[0], "zh"
            return "", self.rng.choice(zh), "zh"

        self._dx_rows(site, f, render, term_for)
        if site in DIALECTS:
            self._notifiable_rows(site, f, render, term_for)
        return f

    def hosp_c_dx(self, name: str = "hosp-c/diagnoses.csv") -> _File:
        f = _File(name, ["encounter_dx_id", "id_number", "patient", "mobile", "birth", "gender",
                         "dx_date", "diagnosis"], "mixed")
        local = {"E11.9": "DM-II", "I10": "高血压3级", "J44.9": "慢阻肺急性加重"}

        def render(p: Person, key: str, code: str, when: object, term: str) -> list[str]:
            w = str((when - date(1899, 12, 30)).days) if isinstance(when, date) else "2023-13-45"
            rid = p.rid if self.rng.random() < 0.7 else \
                f"{p.rid[:6]} {p.rid[6:14]} {p.rid[14:]}".replace("X", "x")
            mobile = f"{p.phone[:3]}-{p.phone[3:7]}-{p.phone[7:]}"
            birth = str((p.birth - date(1899, 12, 30)).days)
            return [key, rid, self.rng.choice([p.en, p.zh]), mobile, birth,
                    "2" if p.female else "1", w, term]

        def term_for(who: str) -> tuple[str, str, str]:
            r = self.rng.random()
            if who in local and r < 0.2:
                t = local[who]
                return "", t, "zh" if any("\u4e00" <= c <= "\u9fff" for c in t) else "en"
            if r < 0.6:
                return "", self.rng.choice(DX[who][0]), "en"
            return "", self.rng.choice(DX[who][2]), "zh"

        self._dx_rows(name.partition("/")[0], f, render, term_for)
        for t in f.truth:                  # the file's language is per row
            if t[8] == "mixed":
                t[8] = "en"
        return f

    # -- labs ------------------------------------------------------------------------------
    def _lab(self, analyte: str, si: bool) -> tuple[str, str, str]:
        """(source value, source unit, expected canonical value) for one result."""
        _, unit, (lo, hi), dec, conv, *_ = LABS[analyte]
        canon = self.rng.uniform(lo, hi)
        if si or not conv:
            v = _fmt_value(canon, dec)
            return v, unit, v
        src_unit, factor, offset = conv[0]
        src = round((canon - offset) / factor, 1 if factor < 1 else 2)
        expected = round(src * factor + offset, dec)
        return f"{src:g}", src_unit, _fmt_value(expected, dec)

    def _lab_rows(self, site: str, f: _File, render: Callable[..., list[str]],
                  name_for: Callable[[str], tuple[str, str]], si: Callable[[str], bool]) -> None:
        rng = self.rng
        for i in range(self.rows):
            p = rng.choice(self.seen[site])
            key = f"{site[-1].upper()}LAB{i + 1:07d}"
            a = rng.choice(list(LABS))
            name, lang = name_for(a)
            value, unit, expected = self._lab(a, si(a))
            f.add(render(p, key, self.visit(), name, value, unit), "mapped", "loinc",
                  LABS[a][0], LABS[a][1], expected, lang=lang, person=p.pid)
            roll = rng.random()
            if roll < 0.03:
                f.add(list(f.rows[-1]), "duplicate", lang=lang)
            elif roll < 0.05:
                t = rng.choice(["Ferritin", "Glucse", "血清铁蛋白"])
                f.add(render(p, f"{key}R", self.visit(), t, "12", "mg/dL"), "review",
                      reason="unknown_test", lang="zh" if t == "血清铁蛋白" else "en")
            elif roll < 0.10:
                kind = rng.choice(["nan", "unit", "conflict", "implausible", "empty", "date"])
                row = render(p, f"{key}D", self.visit(), name, value, unit)
                vi, ui = f.header.index(f.value_col), f.header.index(f.unit_col)
                if kind == "nan":
                    row[vi] = rng.choice(["N/A", "pending", "阴性"])
                elif kind == "unit":
                    row[ui] = rng.choice(["mg/ml/h", "bananas", "mmol"])
                elif kind == "conflict":
                    if a in ("alt", "wbc"):
                        row[ui] = "mmol/L"
                    else:
                        row[ui] = "U/L"
                elif kind == "implausible":
                    row[vi] = "99999"
                elif kind == "empty":
                    row[vi] = ""
                else:
                    row = render(p, f"{key}D", "bad", name, value, unit)
                reason = {"nan": "invalid_value", "unit": "unknown_unit",
                          "conflict": "unit_conflict", "implausible": "implausible_value",
                          "empty": "missing_value", "date": "invalid_date"}[kind]
                f.add(row, "quarantined", reason=reason, lang=lang)

    def hosp_a_labs(self, site: str = "hosp-a") -> _File:
        f = _File(f"{site}/labs.csv", ["AccessionNo", "NationalID", "MRN", "PatientName", "DOB",
                                      "Sex", "CollectedDate", "TestName", "Result", "Units"],
                  "en")
        f.value_col, f.unit_col = "Result", "Units"

        def render(p: Person, key: str, when: object, name: str, value: str, unit: str
                   ) -> list[str]:
            w = when.strftime("%m/%d/%Y") if isinstance(when, date) else "13/45/2023"
            return [key, p.rid, f"{site[-1].upper()}{p.pid[1:]}", p.en,
                    p.birth.strftime("%m/%d/%Y"), "F" if p.female else "M", w, name, value,
                    unit]

        self._lab_rows(site, f, render, lambda a: (LABS[a][5], "en"), lambda a: False)
        return f

    def hosp_b_labs(self, site: str = "hosp-b") -> _File:
        f = _File(f"{site}/labs.tsv", ["检验单号", "身份证号", "姓名", "性别", "采样日期",
                                      "检验项目", "结果", "单位"], "zh")
        f.value_col, f.unit_col = "结果", "单位"

        def render(p: Person, key: str, when: object, name: str, value: str, unit: str
                   ) -> list[str]:
            w = f"{when.year}年{when.month}月{when.day}日" if isinstance(when, date) else \
                "2023年2月30日"
            return [key, p.rid, p.zh, "女" if p.female else "男", w, name, value, unit]

        self._lab_rows(site, f, render, lambda a: (LABS[a][6], "zh"), lambda a: True)
        return f

    def hosp_c_labs(self, site: str = "hosp-c") -> _File:
        f = _File(f"{site}/labs.xlsx", ["sample_id", "id_number", "patient", "gender", "sampled",
                                       "item", "result", "unit"], "en")
        f.value_col, f.unit_col = "result", "unit"

        def render(p: Person, key: str, when: object, name: str, value: str, unit: str
                   ) -> list[str]:
            w = str((when - date(1899, 12, 30)).days) if isinstance(when, date) else "2023-13-45"
            return [key, p.rid, p.zh, "2" if p.female else "1", w, name, value, unit]

        def name_for(a: str) -> tuple[str, str]:
            if self.rng.random() < 0.5:
                return LABS[a][7], "en"
            return LABS[a][6], "zh"

        self._lab_rows(site, f, render, name_for, lambda a: self.rng.random() < 0.5)
        return f


def _break_rid(rid: str) -> str:
    last = rid[-1]
    return rid[:-1] + ("0" if last != "0" else "1")


def _write_delimited(path: Path, f: _File, delimiter: str, encoding: str, bom: bool) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, delimiter=delimiter, lineterminator="\r\n")
    w.writerow(f.header)
    w.writerows(f.rows)
    data = buf.getvalue().encode(encoding)
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + data)


def _write_xlsx(path: Path, f: _File) -> None:
    import openpyxl

    wb = openpyxl.Workbook(write_only=True)
    ws = wb.create_sheet("labs")
    ws.append(f.header)
    for row in f.rows:
        ws.append([int(c) if c.isdigit() and len(c) < 9 else c for c in row])
    wb.save(path)


def generate(out: Path, seed: int = 7, persons: int = 300, rows: int = 400,
             unseen: float = 0.0, notifiable: int = 0, pathogen: int = 0,
             hospitals: int = 3) -> list[str]:
    """Write the hospitals' exports, profiles, ``truth.csv`` and ``linkage.csv``.

    ``unseen`` is the share of clean diagnosis rows written with a spelling no curated table
    holds (truth: the code a steward would choose). ``notifiable`` is the number of persons
    added with a COVID-19 diagnosis at both hosp-a and hosp-b, days apart (the module
    docstring). ``pathogen`` is the number of qualitative notifiable-pathogen results written
    to ``hosp-a/micro.csv`` and ``hosp-b/micro.tsv`` (``synth_micro``; own random stream, none
    when 0). ``hospitals`` > 3 adds ``hosp-d``… in the first three's dialects (the module
    docstring). Returns the source file names (relative to ``out``) in ingest order.
    """
    g = Generator(seed, persons, rows, unseen, notifiable, hospitals)
    files = [g.hosp_a_dx(), g.hosp_a_labs(), g.hosp_b_dx(), g.hosp_b_labs(), g.hosp_c_dx(),
             g.hosp_c_labs()]
    legacy = Generator(seed + 1, persons, max(rows // 10, 10))
    legacy.people, legacy.seen = g.people, g.seen
    leg = legacy.hosp_c_dx("hosp-c/diagnoses-legacy.csv")
    for t in leg.truth:
        t[2:8] = ["quarantined", "", "", "", "", "encoding"]
    leg.link = []
    files.append(leg)
    files += g.extra_files()
    micro = []
    if pathogen:
        from medledger.gateway.synth_micro import micro_files

        micro = micro_files(g, pathogen, seed + 53)
    for site in site_names(hospitals):
        (out / site).mkdir(parents=True, exist_ok=True)
    for f in files:
        path, base = out / f.name, base_file(f.name)
        if base.endswith(".xlsx"):
            _write_xlsx(path, f)
        elif base == "hosp-a/diagnoses.csv":
            _write_delimited(path, f, ",", "utf-8", bom=True)
        elif base.endswith(".tsv"):
            _write_delimited(path, f, "\t", "gbk", bom=False)
        elif base == "hosp-c/diagnoses-legacy.csv":
            _write_delimited(path, f, ";", "gbk", bom=False)
        elif base.startswith("hosp-c"):
            _write_delimited(path, f, ";", "utf-8", bom=False)
        else:
            _write_delimited(path, f, ",", "utf-8", bom=False)
        (out / (f.name + ".toml")).write_text(profile_text(f.name), encoding="utf-8")
    if micro:
        from medledger.gateway.synth_micro import write_micro

        for f in micro:
            write_micro(out, f)
        files += micro
    hl7_bytes, hl7_truth = hl7_messages(g)
    (out / "hosp-a" / "adt-oru.hl7").write_bytes(hl7_bytes)
    with (out / "truth.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(TRUTH_COLUMNS)
        for f in files:
            w.writerows(f.truth)
        w.writerows(hl7_truth)
    with (out / "linkage.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["source_file", "row", "person"])
        for f in files:
            w.writerows(f.link)
    return [f.name for f in files] + ["hosp-a/adt-oru.hl7"]


def bench_file(path: Path, rows: int, persons: int = 50_000, seed: int = 1) -> Path:
    """A large clean lab export in hosp-a's dialect (US units, MM/DD/YYYY), written as a
    stream; returns the profile path written beside it."""
    rng = random.Random(seed)
    births = [date(1940, 1, 1) + timedelta(days=rng.randrange(0, 365 * 60))
              for _ in range(min(persons, 5000))]
    names = list(LABS)
    with path.open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh, lineterminator="\r\n")
        w.writerow(["AccessionNo", "NationalID", "MRN", "PatientName", "DOB", "Sex",
                    "CollectedDate", "TestName", "Result", "Units"])
        for i in range(rows):
            p = rng.randrange(persons)
            birth = births[p % len(births)]
            body = f"110105{birth:%Y%m%d}{p % 1000:03d}"
            rid = body + "10X98765432"[sum(int(c) * w_ for c, w_ in
                                           zip(body, _W, strict=True)) % 11]
            a = names[i % len(names)]
            _, unit, (lo, hi), dec, conv, en, _, _ = LABS[a]
            value = rng.uniform(lo, hi)
            if conv:
                src_unit, factor, offset = conv[0]
                text, unit = f"{(value - offset) / factor:.1f}", src_unit
            else:
                text = f"{value:.{dec}f}"
            when = date(2022, 1, 1) + timedelta(days=i % 900)
            w.writerow([f"BENCH{i:09d}", rid, f"A{p:06d}", f"Person {p}", f"{birth:%m/%d/%Y}",
                        "F" if p % 2 else "M", f"{when:%m/%d/%Y}", en, text, unit])
    prof = path.with_name(path.name + ".toml")
    prof.write_text(PROFILES["hosp-a/labs.csv"], encoding="utf-8")
    return prof


def fhir_export(path: Path, seed: int = 3, patients: int = 20, ndjson: bool = False
                ) -> dict[str, int]:
    """A synthetic FHIR R4 export (Bundle, or NDJSON with ``ndjson``): Patients with resident
    IDs, Conditions (WHO or national ICD-10 codings, or only text), Observations (LOINC +
    UCUM), plus one resource of each kind of trouble. Returns the expected counts."""
    rng = random.Random(seed)
    people = _people(rng, patients)
    res: list[dict[str, object]] = []
    for i, p in enumerate(people):
        res.append({"resourceType": "Patient", "id": f"p{i}", "gender": "female" if p.female
                    else "male", "birthDate": p.birth.isoformat(),
                    "identifier": [{"system": "urn:oid:2.16.156.10011.1.1", "value": p.rid}],
                    "name": [{"text": p.en}], "telecom": [{"system": "phone", "value": p.phone}]})
        who = rng.choice(list(DX))
        nat = DX[who][1]
        coding = ({"system": "http://medledger.dev/fhir/CodeSystem/icd-10-cn", "code": nat}
                  if nat and rng.random() < 0.5 else
                  {"system": "http://hl7.org/fhir/sid/icd-10", "code": who})
        res.append({"resourceType": "Condition", "id": f"c{i}", "subject": {
            "reference": f"Patient/p{i}"}, "code": {"coding": [coding]},
            "recordedDate": "2024-03-0" + str(1 + i % 9)})
        a = rng.choice(list(LABS))
        lo, hi = LABS[a][2]
        res.append({"resourceType": "Observation", "id": f"o{i}", "status": "final",
                    "subject": {"reference": f"Patient/p{i}"},
                    "code": {"coding": [{"system": "http://loinc.org", "code": LABS[a][0]}]},
                    "effectiveDateTime": "2024-03-05T08:30:00+08:00",
                    "valueQuantity": {"value": round(rng.uniform(lo, hi), 1),
                                      "unit": LABS[a][1], "system": "http://unitsofmeasure.org",
                                      "code": LABS[a][1]}})
    res.append({"resourceType": "Condition", "id": "text-only", "subject": {
        "reference": "Patient/p0"}, "code": {"text": "慢阻肺"}, "recordedDate": "2024-01-02"})
    res.append({"resourceType": "Condition", "id": "tcm", "subject": {
        "reference": "Patient/p0"}, "code": {"text": "消渴病"}, "recordedDate": "2024-01-02"})
    res.append({"resourceType": "Condition", "id": "orphan", "subject": {
        "reference": "Patient/nobody"}, "code": {"text": "HTN"}, "recordedDate": "2024-01-02"})
    res.append({"resourceType": "Condition", "id": "bad-date", "subject": {
        "reference": "Patient/p1"}, "code": {"text": "HTN"}, "recordedDate": "2024-02-30"})
    res.append({"resourceType": "Encounter", "id": "e1", "status": "finished",
                "class": {"code": "AMB"}})
    res.append({"resourceType": "Observation", "id": "note", "status": "final",
                "code": {"text": "comment"}, "subject": {"reference": "Patient/p1"},
                "valueString": "see letter"})
    if ndjson:
        path.write_bytes(b"".join(orjson_dumps(r) + b"\n" for r in res) + b"{not json\n")
    else:
        path.write_bytes(orjson_dumps({"resourceType": "Bundle", "type": "collection",
                                       "entry": [{"resource": r} for r in res]}))
    n = len(people)
    return {"mapped": 2 * n + 1, "review": 1, "quarantined": 2 + int(ndjson),
            "ignored": n + 2, "resources": len(res) + int(ndjson)}


def orjson_dumps(doc: object) -> bytes:
    import orjson

    return orjson.dumps(doc)


def hl7_messages(g: Generator, name: str = "hosp-a/adt-oru.hl7", messages: int = 60
                 ) -> tuple[bytes, list[list[str]]]:
    """Synthetic HL7 v2.5.1 ADT^A01 (DG1 with ICD-10 ``I10`` coding or text only) and
    ORU^R01 (numeric OBX with LOINC codes, plus a text OBX that is ignored) messages for
    hosp-a, with injected defects; returns (file bytes, truth rows with ``m:s`` positions)."""
    rng = g.rng
    out: list[str] = []
    truth: list[list[str]] = []
    for m in range(1, messages + 1):
        p = rng.choice(g.seen["hosp-a"])
        when = g.visit().strftime("%Y%m%d%H%M")
        sex = "F" if p.female else "M"
        pid = (f"PID|1||A{p.pid[1:]}^^^RIVERSIDE^MR||{p.en.replace(' ', '^')}||"
               f"{p.birth:%Y%m%d}|{sex}|||{rng.randrange(1, 300)} Lakeside Road^^Riverside")
        if m % 2:
            segs = [f"MSH|^~\\&|RHIS|RIVERSIDE|GW|RIVERSIDE|{when}||ADT^A01^ADT_A01|ADT{m:05d}|"
                    "P|2.5.1", f"EVN|A01|{when}", pid, "PV1|1|I"]
            for k in range(1, rng.choice([2, 3])):
                who = rng.choice(list(DX))
                roll = rng.random()
                pos = f"{m}:{len(segs) + 1}"
                if roll < 0.08:
                    segs.append(f"DG1|{k}||ZZZ.9^Bad code^I10||{when}|F")
                    truth.append([name, pos, "quarantined", "", "", "", "", "unknown_code",
                                  "en"])
                elif roll < 0.14:
                    segs.append(f"DG1|{k}||{who}^{DX[who][0][0]}^I10||20230230|F")
                    truth.append([name, pos, "quarantined", "", "", "", "", "invalid_date",
                                  "en"])
                elif roll < 0.2:
                    segs.append(f"DG1|{k}||^{rng.choice(REVIEW_EN)}^||{when}|F")
                    truth.append([name, pos, "review", "", "", "", "", "no_exact_match", "en"])
                elif roll < 0.6:
                    segs.append(f"DG1|{k}||{who}^{DX[who][0][0]}^I10||{when}|F")
                    truth.append([name, pos, "mapped", "icd10", who, "", "", "", "en"])
                else:
                    segs.append(f"DG1|{k}||^{rng.choice(DX[who][0])}^||{when}|F")
                    truth.append([name, pos, "mapped", "icd10", who, "", "", "", "en"])
        else:
            segs = [f"MSH|^~\\&|RLIS|RIVERSIDE|GW|RIVERSIDE|{when}||ORU^R01^ORU_R01|"
                    f"ORU{m:05d}|P|2.5.1", pid, f"OBR|1||F{m:06d}|LAB^Panel|||{when}"]
            for k in range(1, rng.choice([2, 3, 4])):
                a = rng.choice(list(LABS))
                value, unit, expected = g._lab(a, rng.random() < 0.5)
                pos = f"{m}:{len(segs) + 1}"
                if rng.random() < 0.08:
                    segs.append(f"OBX|{k}|NM|{LABS[a][0]}^{LABS[a][5]}^LN||{value}|furlong|||||F"
                                f"|||{when}")
                    truth.append([name, pos, "quarantined", "", "", "", "", "unknown_unit",
                                  "en"])
                else:
                    esc = unit.replace("^", "\\S\\")      # HL7 escape for ^ in 10^3/uL
                    segs.append(f"OBX|{k}|NM|{LABS[a][0]}^{LABS[a][5]}^LN||{value}|{esc}|||||"
                                f"F|||{when}")
                    truth.append([name, pos, "mapped", "loinc", LABS[a][0], LABS[a][1],
                                  expected, "", "en"])
            segs.append(f"OBX|{k + 1}|ST|8251-1^Service comment^LN||see report||||||F")
        out.append("\r".join(segs))
    return ("\r".join(out) + "\r").encode(), truth
