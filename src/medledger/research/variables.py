"""The variable map: how a site turns the FHIR records in its gateway vault into the analysis
table a study queries — one row per patient, one column per declared variable (ADR 0040).

A map is declarative (TOML, pydantic-checked) and hashed: a study may fix the map's SHA-256 in
its terms (``variable_map``), and a vault-backed site refuses a study whose map differs from its
own. Example::

    id = "medledger-research"
    version = "1"
    reference_year = 2024            # age = reference_year − birth year

    [[variable]]
    name = "age"                     # the name studies and queries use
    kind = "age"
    band = 5                         # optional: floor to 5-year bands (40, 45, …)

    [[variable]]
    name = "diabetes"
    kind = "condition"
    codes = ["E11"]                  # WHO ICD-10 code prefixes: E11 covers E11.0 … E11.9

    [[variable]]
    name = "glucose"
    kind = "lab"
    loinc = "14749-6"                # value in the analyte's canonical UCUM unit (the gateway's)
    reduce = "mean"                  # first | last | mean | min | max | count

Kinds, what they read and the consent category they need (the study's categories are the union
over its variables; a patient is a row only if their consent covers all of them):

=================  ====================================================  ==================
``gender``         Patient.gender through ``map`` (FHIR code → value;    demographics
                   unmapped → missing); without ``map`` the FHIR code
``birth_year``     Patient.birthDate (a year; the gateway omits it at    demographics
                   90+ → missing); ``band`` floors it
``age``            ``reference_year`` − birth year; ``band`` floors it   demographics
``condition``      1 if a current Condition has a WHO ICD-10 code        conditions
                   starting with one of ``codes``, else 0
``lab``            the patient's Observations with LOINC ``loinc``        labs
                   (valueQuantity.value), reduced; none → missing
                   (``count`` → 0)
``medication``     1 if a MedicationRequest/Dispense has a code starting  medications
                   with one of ``codes`` (any system), else 0
``visits``         distinct record dates over ``categories``              ``categories``
``followup_days``  last − first record date over ``categories``           ``categories``
``time_to``        days from the first record date (over ``categories``)  conditions +
                   to the first Condition matching ``codes``; without     ``categories``
                   one, to the last record date (censored) — pair it
                   with a ``condition`` variable of the same codes as
                   the event indicator
=================  ====================================================  ==================

Dates: the gateway shifts every date of a patient by one keyed offset (±1–50 days), so
intervals within a patient (``followup_days``, ``time_to``) are exact and absolute dates are
never exposed. Missing values are NaN (numeric) or None (text); the analyses drop them
(complete cases) or, for cross-tabulations, count only declared levels.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from medledger.errors import Code
from medledger.gateway.icd10 import WHO_SYSTEM
from medledger.gateway.loinc import LOINC_SYSTEM
from medledger.research import audit
from medledger.research.errors import ResearchError

__all__ = ["DEFAULT_MAP", "Extract", "Variable", "VariableMap", "extract", "load_map",
           "parse_map"]

Kind = Literal["gender", "birth_year", "age", "condition", "lab", "medication", "visits",
               "followup_days", "time_to"]
Clinical = Literal["conditions", "labs", "medications"]
DEMOGRAPHIC_KINDS = ("gender", "birth_year", "age")
DEFAULT_CLINICAL: tuple[Clinical, ...] = ("conditions", "labs")
DATE_FIELDS = {"Condition": "recordedDate", "Observation": "effectiveDateTime",
               "MedicationRequest": "authoredOn", "MedicationDispense": "whenHandedOver"}
CATEGORY_OF = {"Patient": "demographics", "Condition": "conditions", "Observation": "labs",
               "MedicationRequest": "medications", "MedicationDispense": "medications"}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Variable(_Strict):
    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
    kind: Kind
    description: str = ""
    map: dict[str, str | int] | None = None
    band: int | None = Field(default=None, ge=1, le=100)
    codes: list[str] | None = None
    loinc: str | None = Field(default=None, pattern=r"^[0-9]{1,7}-[0-9]$")
    reduce: Literal["first", "last", "mean", "min", "max", "count"] = "mean"
    categories: list[Clinical] = Field(default_factory=lambda: list(DEFAULT_CLINICAL))

    @model_validator(mode="after")
    def _fits_kind(self) -> Variable:
        k = self.kind
        if (self.codes is not None) != (k in ("condition", "medication", "time_to")):
            raise ValueError(f"{self.name}: codes go with condition, medication and time_to")
        if self.codes is not None and (not self.codes or not all(
                c and c == c.strip() for c in self.codes)):
            raise ValueError(f"{self.name}: codes must be non-empty strings")
        if (self.loinc is not None) != (k == "lab"):
            raise ValueError(f"{self.name}: loinc goes with kind lab (and lab needs it)")
        if self.map is not None and k != "gender":
            raise ValueError(f"{self.name}: map goes with kind gender")
        if self.map is not None and len({type(v) for v in self.map.values()}) > 1:
            raise ValueError(f"{self.name}: map values are all text or all integers")
        if self.band is not None and k not in ("birth_year", "age"):
            raise ValueError(f"{self.name}: band goes with birth_year and age")
        return self

    def needs(self) -> set[str]:
        """The consent categories this variable reads."""
        if self.kind in DEMOGRAPHIC_KINDS:
            return {"demographics"}
        if self.kind in ("condition", "lab", "medication"):
            return {{"condition": "conditions", "lab": "labs",
                     "medication": "medications"}[self.kind]}
        extra = {"conditions"} if self.kind == "time_to" else set()
        return set(self.categories) | extra

    @property
    def text(self) -> bool:
        """A text column (a gender map to strings, or no map)."""
        return self.kind == "gender" and (self.map is None or any(
            isinstance(v, str) for v in self.map.values()))


class VariableMap(_Strict):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")
    version: str = Field(pattern=r"^[A-Za-z0-9._-]{1,32}$")
    reference_year: int | None = Field(default=None, ge=1900, le=2200)
    variables: list[Variable] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> VariableMap:
        names = [v.name for v in self.variables]
        if len(set(names)) != len(names):
            raise ValueError("variable names repeat")
        if self.reference_year is None and any(v.kind == "age" for v in self.variables):
            raise ValueError("kind age needs reference_year")
        return self

    def __contains__(self, name: object) -> bool:
        return any(v.name == name for v in self.variables)

    def get(self, name: str) -> Variable:
        for v in self.variables:
            if v.name == name:
                return v
        raise KeyError(name)

    def digest(self) -> str:
        """SHA-256 of the map's canonical JSON (what a study's ``variable_map`` names)."""
        return audit.digest(self.model_dump())

    def categories(self, names: Iterable[str]) -> list[str]:
        """The consent categories needed to read ``names`` (sorted)."""
        out: set[str] = set()
        for n in names:
            out |= self.get(n).needs()
        return sorted(out)


def parse_map(text: str, source: str = "variable map") -> VariableMap:
    try:
        doc = tomllib.loads(text)
        doc["variables"] = doc.pop("variable", [])
        return VariableMap.model_validate(doc)
    except (tomllib.TOMLDecodeError, ValidationError) as exc:
        raise ResearchError(Code.BAD_ARGS, f"{source}: {exc}") from None


def load_map(path: Path) -> VariableMap:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ResearchError(Code.NOT_FOUND, f"cannot read {path}: {exc.strerror}") from None
    return parse_map(text, str(path))


@dataclass
class _Patient:
    gender: str | None = None
    birth_year: int | None = None
    conditions: list[tuple[date, str, str]] = field(default_factory=list)  # date, id, WHO code
    labs: dict[str, list[tuple[date, str, float]]] = field(default_factory=dict)
    meds: list[tuple[date, list[str]]] = field(default_factory=list)
    dates: dict[str, set[date]] = field(default_factory=dict)  # category → record dates
    _seen: dict[tuple[str, ...], list[date]] = field(default_factory=dict)

    def seen(self, categories: tuple[str, ...]) -> list[date]:
        """Sorted distinct record dates over ``categories`` (cached: variables share them)."""
        if categories not in self._seen:
            self._seen[categories] = sorted(set().union(
                *(self.dates.get(c, set()) for c in categories)))
        return self._seen[categories]


def _date(value: Any) -> date | None:
    if not isinstance(value, str) or len(value) < 10:
        return None
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        return None


def _codes(resource: Mapping[str, Any], key: str, system: str | None) -> list[str]:
    return [str(c["code"]) for c in resource.get(key, {}).get("coding", [])
            if "code" in c and (system is None or c.get("system") == system)]


def _add(p: _Patient, rtype: str, res: Mapping[str, Any]) -> None:
    if rtype == "Patient":
        g = res.get("gender")
        p.gender = g if isinstance(g, str) else None
        y = res.get("birthDate")
        p.birth_year = int(y[:4]) if isinstance(y, str) and y[:4].isdigit() else None
        return
    when = _date(res.get(DATE_FIELDS.get(rtype, "")))
    if when is None:
        return
    p.dates.setdefault(CATEGORY_OF[rtype], set()).add(when)
    rid = str(res.get("id", ""))
    if rtype == "Condition":
        p.conditions.extend((when, rid, c) for c in _codes(res, "code", WHO_SYSTEM))
    elif rtype == "Observation":
        q = res.get("valueQuantity", {}).get("value")
        if isinstance(q, (int, float)) and not isinstance(q, bool):
            for code in _codes(res, "code", LOINC_SYSTEM):
                p.labs.setdefault(code, []).append((when, rid, float(q)))
    else:
        p.meds.append((when, _codes(res, "medicationCodeableConcept", None)))


def _value(v: Variable, p: _Patient, ref_year: int | None) -> Any:
    k = v.kind
    if k == "gender":
        if p.gender is None:
            return None
        return p.gender if v.map is None else v.map.get(p.gender)
    if k in ("birth_year", "age"):
        if p.birth_year is None:
            return math.nan
        x = p.birth_year if k == "birth_year" else (ref_year or 0) - p.birth_year
        return float(x - x % v.band) if v.band else float(x)
    codes = tuple(v.codes or ())
    if k == "condition":
        return float(any(c.startswith(codes) for _, _, c in p.conditions))
    if k == "medication":
        return float(any(c.startswith(codes) for _, cs in p.meds for c in cs))
    if k == "lab":
        obs = sorted(p.labs.get(v.loinc or "", []))
        if v.reduce == "count":
            return float(len(obs))
        if not obs:
            return math.nan
        vals = [x for _, _, x in obs]
        r = v.reduce
        return (vals[0] if r == "first" else vals[-1] if r == "last" else
                math.fsum(vals) / len(vals) if r == "mean" else min(vals) if r == "min"
                else max(vals))
    seen = p.seen(tuple(v.categories))
    if k == "visits":
        return float(len(seen))
    if not seen:
        return math.nan
    if k == "followup_days":
        return float((seen[-1] - seen[0]).days)
    hits = sorted(d for d, _, c in p.conditions if c.startswith(codes))  # time_to
    start = min(seen[0], hits[0]) if hits else seen[0]
    return float(((hits[0] if hits else seen[-1]) - start).days)


@dataclass(frozen=True)
class Extract:
    """Every mapped variable for every patient in a vault (rows in ``patients`` order)."""

    patients: list[str]
    columns: dict[str, np.ndarray[Any, Any]]


def extract(mapping: VariableMap, records: Iterable[tuple[str, str, Mapping[str, Any]]],
            names: Sequence[str] | None = None) -> Extract:
    """The analysis table from ``(patient, resourceType, resource)`` triples: one row per
    patient (sorted by pseudonym), one column per variable of ``mapping`` (or of ``names``)."""
    people: dict[str, _Patient] = {}
    for subject, rtype, res in records:
        if rtype in CATEGORY_OF:
            _add(people.setdefault(subject, _Patient()), rtype, res)
    order = sorted(people)
    cols: dict[str, np.ndarray[Any, Any]] = {}
    for var in (mapping.variables if names is None else [mapping.get(n) for n in names]):
        vals = [_value(var, people[p], mapping.reference_year) for p in order]
        cols[var.name] = (np.array(vals, dtype=object) if var.text
                          else np.array(vals, dtype=float))
    return Extract(order, cols)


DEFAULT_TOML = """\
# The consortium's default research variables over the gateway's FHIR output.
id = "medledger-research"
version = "1"
reference_year = 2024

[[variable]]
name = "age"
kind = "age"
description = "years at the reference year (2024 - birth year)"

[[variable]]
name = "age_band"
kind = "age"
band = 10
description = "age in 10-year bands (lower bound)"

[[variable]]
name = "birth_year"
kind = "birth_year"

[[variable]]
name = "sex"
kind = "gender"
map = { female = "F", male = "M" }

[[variable]]
name = "female"
kind = "gender"
map = { female = 1, male = 0 }

[[variable]]
name = "hypertension"
kind = "condition"
codes = ["I10"]

[[variable]]
name = "diabetes"
kind = "condition"
codes = ["E11"]

[[variable]]
name = "coronary"
kind = "condition"
codes = ["I25"]

[[variable]]
name = "copd"
kind = "condition"
codes = ["J44"]

[[variable]]
name = "stroke"
kind = "condition"
codes = ["I63"]

[[variable]]
name = "ckd"
kind = "condition"
codes = ["N18"]

[[variable]]
name = "hyperlipidaemia"
kind = "condition"
codes = ["E78"]

[[variable]]
name = "heart_failure"
kind = "condition"
codes = ["I50"]

[[variable]]
name = "afib"
kind = "condition"
codes = ["I48"]

[[variable]]
name = "glucose"
kind = "lab"
loinc = "14749-6"
description = "mean glucose, mmol/L"

[[variable]]
name = "creatinine"
kind = "lab"
loinc = "14682-9"
description = "mean creatinine, umol/L"

[[variable]]
name = "cholesterol"
kind = "lab"
loinc = "14647-2"
description = "mean total cholesterol, mmol/L"

[[variable]]
name = "hemoglobin"
kind = "lab"
loinc = "718-7"
description = "mean haemoglobin, g/L"

[[variable]]
name = "hba1c"
kind = "lab"
loinc = "4548-4"
reduce = "last"
description = "latest HbA1c, %"

[[variable]]
name = "alt"
kind = "lab"
loinc = "1742-6"
description = "mean ALT, U/L"

[[variable]]
name = "lab_tests"
kind = "visits"
categories = ["labs"]
description = "distinct days with a lab result"

[[variable]]
name = "visits"
kind = "visits"
description = "distinct days with a diagnosis or lab result"

[[variable]]
name = "followup_days"
kind = "followup_days"
description = "days from the first to the last diagnosis or lab result"

[[variable]]
name = "days_to_stroke"
kind = "time_to"
codes = ["I63"]
description = "days from the first record to the first stroke (event: stroke), else to the last"
"""

DEFAULT_MAP = parse_map(DEFAULT_TOML, "default variable map")
