"""ICD-10 reference tables: a curated WHO subset with English and Chinese titles, and national
extension codes kept with their edition and mapped to their WHO parent.

Codes and English titles follow the WHO ICD-10 2019 browser (icd.who.int/browse10/2019/en);
Chinese titles follow the usage of GB/T 14396 疾病分类与代码 and are written here by the project
(only facts — a code and its name — are taken from those sources). This is a *subset*: the
gateway never claims a code outside it, so an unseen term goes to review, never to a guess.

National extension codes add digits (or ``x`` for "no WHO subcategory") after the WHO code, e.g.
``E11.900`` under ``E11.9`` and ``I10.x00`` under ``I10``. The table below is the curated list the
consortium has agreed on; an extension code outside it is sent to review, never stripped blindly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

WHO_SYSTEM = "http://hl7.org/fhir/sid/icd-10"
NATIONAL_SYSTEM = "http://medledger.dev/fhir/CodeSystem/icd-10-cn"
NATIONAL_EDITION = "CN-clinical-2.0"
WHO_EDITION = "2019"

CODE_RE = re.compile(r"^[A-Z][0-9]{2}(\.[0-9X]{1,4})?$")
NATIONAL_RE = re.compile(r"^[A-Z][0-9]{2}\.[0-9X][0-9X]{2,3}$")


@dataclass(frozen=True)
class Concept:
    code: str
    en: str
    zh: str


# code | English title (WHO) | Chinese title
_WHO = """\
A16.2|Tuberculosis of lung, without mention of bacteriological or histological confirmation|肺结核
B18.1|Chronic viral hepatitis B without delta-agent|慢性乙型病毒性肝炎
C16.9|Malignant neoplasm of stomach, unspecified|胃恶性肿瘤
C34.9|Malignant neoplasm of bronchus or lung, unspecified|肺恶性肿瘤
C50.9|Malignant neoplasm of breast, unspecified|乳房恶性肿瘤
D64.9|Anaemia, unspecified|贫血
E03.9|Hypothyroidism, unspecified|甲状腺功能减退症
E10.9|Type 1 diabetes mellitus without complications|1型糖尿病不伴有并发症
E11.9|Type 2 diabetes mellitus without complications|2型糖尿病不伴有并发症
E66.9|Obesity, unspecified|肥胖症
E78.5|Hyperlipidaemia, unspecified|高脂血症
E87.6|Hypokalaemia|低钾血症
F32.9|Depressive episode, unspecified|抑郁发作
G20|Parkinson disease|帕金森病
G40.9|Epilepsy, unspecified|癫痫
I10|Essential (primary) hypertension|特发性（原发性）高血压
I11.9|Hypertensive heart disease without (congestive) heart failure|高血压性心脏病不伴有心力衰竭
I15.9|Secondary hypertension, unspecified|继发性高血压
I21.9|Acute myocardial infarction, unspecified|急性心肌梗死
I25.1|Atherosclerotic heart disease|动脉粥样硬化性心脏病
I42.9|Cardiomyopathy, unspecified|心肌病
I48.9|Atrial fibrillation and atrial flutter, unspecified|心房颤动和心房扑动
I50.9|Heart failure, unspecified|心力衰竭
I63.9|Cerebral infarction, unspecified|脑梗死
I64|Stroke, not specified as haemorrhage or infarction|脑卒中
J06.9|Acute upper respiratory infection, unspecified|急性上呼吸道感染
J18.9|Pneumonia, unspecified|肺炎
J44.9|Chronic obstructive pulmonary disease, unspecified|慢性阻塞性肺病
J45.9|Asthma, unspecified|哮喘
K21.9|Gastro-oesophageal reflux disease without oesophagitis|胃食管反流病不伴有食管炎
K29.7|Gastritis, unspecified|胃炎
K35.8|Acute appendicitis, other and unspecified|急性阑尾炎
K80.2|Calculus of gallbladder without cholecystitis|胆囊结石不伴有胆囊炎
M17.9|Gonarthrosis, unspecified|膝关节病
M81.9|Osteoporosis, unspecified|骨质疏松
N18.9|Chronic kidney disease, unspecified|慢性肾脏病
N39.0|Urinary tract infection, site not specified|泌尿道感染
R50.9|Fever, unspecified|发热
U07.1|COVID-19, virus identified|2019冠状病毒病
"""

# national extension code | WHO parent | Chinese title in the national edition
_NATIONAL = """\
E11.900|E11.9|2型糖尿病
E10.900|E10.9|1型糖尿病
I10.x00|I10|原发性高血压
I25.103|I25.1|冠状动脉粥样硬化性心脏病
J44.900|J44.9|慢性阻塞性肺疾病
I63.900|I63.9|脑梗死
J18.900|J18.9|肺炎
N18.900|N18.9|慢性肾脏病
E78.500|E78.5|高脂血症
I50.900|I50.9|心力衰竭
I48.x01|I48.9|心房颤动
K35.800|K35.8|急性阑尾炎
"""


def _parse(table: str) -> list[tuple[str, ...]]:
    return [tuple(line.split("|")) for line in table.splitlines() if line.strip()]


WHO: dict[str, Concept] = {c: Concept(c, en, zh) for c, en, zh in _parse(_WHO)}
NATIONAL: dict[str, tuple[str, str]] = {c.upper(): (parent, zh) for c, parent, zh in
                                        _parse(_NATIONAL)}


def normalise_code(raw: str) -> str:
    """Upper-case, strip spaces and a trailing dot: ``" e11.9 "`` → ``"E11.9"``."""
    return raw.strip().upper().replace(" ", "").rstrip(".")


def is_well_formed(code: str) -> bool:
    """True when ``code`` (normalised) has the ICD-10 shape (letter, two digits, optional tail)."""
    return CODE_RE.match(code) is not None


def who_parent(code: str) -> str | None:
    """The WHO code for a WHO or curated national code, else None (never derived by stripping)."""
    if code in WHO:
        return code
    hit = NATIONAL.get(code)
    return hit[0] if hit else None


def structural_parent(code: str) -> str | None:
    """The WHO code a national code *would* fall under by construction, when that code is in the
    WHO table — used only to rank review candidates, never to auto-map."""
    if not NATIONAL_RE.match(code):
        return None
    head, tail = code.split(".")
    for cand in (f"{head}.{tail[0]}", head):
        if cand in WHO:
            return cand
    return None


# WHO ICD-10 (2019) chapters: (first category, last category, roman numeral)
CHAPTERS = (("A00", "B99", "I"), ("C00", "D48", "II"), ("D50", "D89", "III"),
            ("E00", "E90", "IV"), ("F00", "F99", "V"), ("G00", "G99", "VI"),
            ("H00", "H59", "VII"), ("H60", "H95", "VIII"), ("I00", "I99", "IX"),
            ("J00", "J99", "X"), ("K00", "K93", "XI"), ("L00", "L99", "XII"),
            ("M00", "M99", "XIII"), ("N00", "N99", "XIV"), ("O00", "O99", "XV"),
            ("P00", "P96", "XVI"), ("Q00", "Q99", "XVII"), ("R00", "R99", "XVIII"),
            ("S00", "T98", "XIX"), ("V01", "Y98", "XX"), ("Z00", "Z99", "XXI"),
            ("U00", "U85", "XXII"))


def category(code: str) -> str:
    """The three-character category of a well-formed code: ``E11.9`` → ``E11``."""
    return code[:3]


def chapter(code: str) -> str | None:
    """The WHO chapter holding a well-formed code, as ``IV E00-E90``; None outside them."""
    cat = category(code)
    for first, last, roman in CHAPTERS:
        if first <= cat <= last:
            return f"{roman} {first}-{last}"
    return None
