"""Lab analytes: LOINC code, canonical UCUM unit, conversions into it and plausible ranges.

LOINC codes and names are from loinc.org (facts only). Each analyte has one canonical unit and
its LOINC code is the one whose property matches that unit (e.g. glucose in mmol/L is
14749-6 Glucose [Moles/volume], not 2345-7 [Mass/volume]). Mass→molar factors use the molar
mass named on each line (PubChem); the HbA1c IFCC→NGSP conversion is the master equation
NGSP % = 0.09148 × IFCC mmol/mol + 2.152 (Hoelzel et al., Clin Chem 2004;50:166-174).
Plausible ranges are wide physiological limits used to catch transcription errors, not
reference intervals.

``PATHOGEN_TESTS`` are qualitative (LOINC scale ``Ord``) tests for notifiable pathogens: their
result is a coded value (positive / negative / detected / not detected / reactive /
non-reactive, ``gateway.qualitative``), not a quantity, so they have no unit or range. Codes and
long common names are from loinc.org; each is also listed in a public notifiable-disease
reporting value set (CH ELM, the Swiss electronic lab reporting guide: 82300-5, 5196-1,
11259-9; US CDC ReportStream COVID-19 feeds: 94500-6, 94558-4). ``ANALYTES`` holds both kinds
(``QUANTITATIVE`` the numeric ones only). ADR 0047.
"""

from __future__ import annotations

from dataclasses import dataclass, field

LOINC_SYSTEM = "http://loinc.org"
UCUM_SYSTEM = "http://unitsofmeasure.org"


@dataclass(frozen=True)
class Analyte:
    key: str
    loinc: str
    display: str
    unit: str                                   # canonical UCUM code
    low: float                                  # plausible range in the canonical unit
    high: float
    factors: dict[str, tuple[float, float]] = field(default_factory=dict)  # ucum → (mul, add)
    names: tuple[str, ...] = ()                 # EN / ZH names and abbreviations
    decimals: int = 2
    scale: str = "Qn"                           # LOINC scale: Qn (a quantity) or Ord (coded)

    def convert(self, value: float, ucum: str) -> float | None:
        """``value`` in ``ucum`` expressed in the canonical unit; None if not convertible."""
        if ucum == self.unit:
            return round(value, self.decimals)
        f = self.factors.get(ucum)
        if f is None:
            return None
        return round(value * f[0] + f[1], self.decimals)


QUANTITATIVE: tuple[Analyte, ...] = (
    # glucose C6H12O6 180.156 g/mol: 1 mg/dL = 10/180.156 mmol/L
    Analyte("glucose", "14749-6", "Glucose [Moles/volume] in Serum or Plasma", "mmol/L", 0.5,
            60.0, {"mg/dL": (10 / 180.156, 0.0)},
            ("glucose", "glu", "blood glucose", "血糖", "葡萄糖")),
    # creatinine C4H7N3O 113.12 g/mol: 1 mg/dL = 10000/113.12 umol/L
    Analyte("creatinine", "14682-9", "Creatinine [Moles/volume] in Serum or Plasma", "umol/L",
            5.0, 3000.0, {"mg/dL": (10000 / 113.12, 0.0)},
            ("creatinine", "cr", "crea", "scr", "肌酐", "血肌酐"), 1),
    # cholesterol C27H46O 386.65 g/mol: 1 mg/dL = 10/386.65 mmol/L
    Analyte("cholesterol", "14647-2", "Cholesterol [Moles/volume] in Serum or Plasma", "mmol/L",
            0.5, 30.0, {"mg/dL": (10 / 386.65, 0.0)},
            ("cholesterol", "total cholesterol", "tc", "chol", "总胆固醇", "胆固醇")),
    Analyte("hemoglobin", "718-7", "Hemoglobin [Mass/volume] in Blood", "g/L", 20.0, 250.0,
            {"g/dL": (10.0, 0.0)},
            ("hemoglobin", "haemoglobin", "hb", "hgb", "血红蛋白"), 1),
    Analyte("potassium", "2823-3", "Potassium [Moles/volume] in Serum or Plasma", "mmol/L", 1.0,
            10.0, {"meq/L": (1.0, 0.0)}, ("potassium", "k", "钾", "血钾")),
    Analyte("sodium", "2951-2", "Sodium [Moles/volume] in Serum or Plasma", "mmol/L", 100.0,
            200.0, {"meq/L": (1.0, 0.0)}, ("sodium", "na", "钠", "血钠"), 1),
    Analyte("hba1c", "4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", "%", 3.0, 20.0,
            {"mmol/mol": (0.09148, 2.152)},
            ("hba1c", "a1c", "glycated hemoglobin", "glycohemoglobin", "糖化血红蛋白"), 1),
    Analyte("wbc", "6690-2", "Leukocytes [#/volume] in Blood by Automated count", "10*9/L", 0.1,
            200.0, {"10*3/uL": (1.0, 0.0), "/uL": (0.001, 0.0)},
            ("wbc", "white blood cells", "leukocytes", "白细胞", "白细胞计数")),
    Analyte("alt", "1742-6",
            "Alanine aminotransferase [Enzymatic activity/volume] in Serum or Plasma", "U/L",
            0.0, 5000.0, {}, ("alt", "gpt", "sgpt", "谷丙转氨酶", "丙氨酸氨基转移酶"), 0),
)



def _pathogen(key: str, code: str, display: str, *names: str) -> Analyte:
    return Analyte(key, code, display, "", 0.0, 0.0, {}, names, 0, "Ord")


PATHOGEN_TESTS: tuple[Analyte, ...] = (
    _pathogen("sars-cov-2-rna", "94500-6", "SARS-CoV-2 (COVID-19) RNA [Presence] in Respiratory "
              "specimen by NAA with probe detection", "sars-cov-2 rna", "sars-cov-2 pcr",
              "covid-19 pcr", "covid-19 rna", "新型冠状病毒核酸", "新冠病毒核酸", "新冠核酸"),
    _pathogen("sars-cov-2-ag", "94558-4", "SARS-CoV-2 (COVID-19) Ag [Presence] in Respiratory "
              "specimen by Rapid immunoassay", "sars-cov-2 antigen", "covid-19 antigen",
              "新型冠状病毒抗原", "新冠抗原"),
    _pathogen("shigella-culture", "82300-5", "Shigella sp [Presence] in Stool by Culture",
              "shigella culture", "stool culture shigella", "志贺菌培养",
              "粪便志贺菌培养", "痢疾杆菌培养"),
    _pathogen("hbsag", "5196-1", "Hepatitis B virus surface Ag [Presence] in Serum or Plasma by "
              "Immunoassay", "hbsag", "hepatitis b surface antigen", "乙肝表面抗原",
              "乙型肝炎表面抗原"),
    _pathogen("hcv-rna", "11259-9", "Hepatitis C virus RNA [Presence] in Serum or Plasma by NAA "
              "with probe detection", "hcv rna", "hepatitis c rna", "丙肝病毒rna",
              "丙型肝炎病毒rna"),
)
ANALYTES: tuple[Analyte, ...] = QUANTITATIVE + PATHOGEN_TESTS
BY_KEY: dict[str, Analyte] = {a.key: a for a in ANALYTES}
BY_LOINC: dict[str, Analyte] = {a.loinc: a for a in ANALYTES}
