"""Notifiable diseases, the code lists that name them, and the coded fields of a case report.

A case report names its diagnosis with an ICD-10 code (WHO ICD-10, 2019 edition). The
notifiable-disease catalog maps codes to a disease: each ``Disease`` lists code prefixes (``A00``
covers ``A00``, ``A00.1``, ``A009``; ``B08.4`` covers only hand, foot and mouth disease inside
``B08``), and the longest matching prefix wins. Counts, case linking and pseudonyms are per
disease, not per code, so ``A01.0`` (typhoid) and ``A01.1`` (paratyphoid A) reported for the same
person are one case of ``typhoid``.

``episode_days`` decides when two reports of one person and one disease are the same case:
reports whose dates lie within that many days of the case's reports are linked; later ones open
a new case (re-infection). ``None`` means once per person (measles, HIV).

``DEFAULT_CATALOG`` is a starting point modelled on common national lists (China's Class A/B/C
notifiable diseases, the US NNDSS list); the CDC replaces it on the ledger with
``case_reports.configure``. ``severe`` marks diseases for which one case is a signal.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "AGE_BANDS", "DEFAULT_CATALOG", "ICD10", "LAB_STATUSES", "SEXES", "Catalog", "Disease",
    "age_band", "normalise_icd10",
]

ICD10 = re.compile(r"^[A-Z][0-9]{2}(\.[0-9A-Z]{1,4})?\Z")
DISEASE_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}\Z")

AGE_BANDS = ("0-4", "5-14", "15-24", "25-44", "45-64", "65+", "unknown")
SEXES = ("female", "male", "other", "unknown")  # FHIR R4 AdministrativeGender
LAB_STATUSES = ("confirmed", "pending", "negative", "not-tested")
_BAND_LOWER = (0, 5, 15, 25, 45, 65)


def age_band(years: int | None) -> str:
    """The age band of an age in completed years (``unknown`` for None or a negative age)."""
    if years is None or years < 0:
        return "unknown"
    band = 0
    for i, lower in enumerate(_BAND_LOWER):
        if years >= lower:
            band = i
    return AGE_BANDS[band]


def normalise_icd10(code: str) -> str:
    """Upper case, no spaces; ``A009`` becomes ``A00.9``. Does not check the result."""
    text = code.strip().upper().replace(" ", "")
    if len(text) > 3 and "." not in text:
        text = text[:3] + "." + text[3:]
    return text


def _key(code: str) -> str:
    return code.replace(".", "")


@dataclass(frozen=True)
class Disease:
    id: str
    name: str
    codes: tuple[str, ...]
    episode_days: int | None = 90
    severe: bool = False

    def to_doc(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "codes": list(self.codes),
                "episode_days": self.episode_days, "severe": self.severe}

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Disease:
        if (type(doc) is not dict or set(doc) != {"id", "name", "codes", "episode_days", "severe"}
                or type(doc["id"]) is not str or type(doc["name"]) is not str
                or type(doc["codes"]) is not list
                or not all(type(c) is str for c in doc["codes"])
                or (doc["episode_days"] is not None and type(doc["episode_days"]) is not int)
                or type(doc["severe"]) is not bool):
            raise CatalogError(f"catalog entry {str(doc)[:80]} must be {{id: str, name: str, "
                               "codes: [str], episode_days: int | null, severe: bool}")
        return cls(doc["id"], doc["name"], tuple(doc["codes"]), doc["episode_days"],
                   doc["severe"])


def _d(id_: str, name: str, codes: str, episode_days: int | None = 90,
       severe: bool = False) -> Disease:
    return Disease(id_, name, tuple(codes.split()), episode_days, severe)


DEFAULT_CATALOG: tuple[Disease, ...] = (
    _d("cholera", "Cholera", "A00", severe=True),
    _d("typhoid", "Typhoid and paratyphoid fevers", "A01"),
    _d("shigellosis", "Shigellosis (bacillary dysentery)", "A03"),
    _d("amoebiasis", "Amoebic dysentery", "A06.0"),
    _d("tuberculosis", "Tuberculosis", "A15 A16 A17 A18 A19", 365),
    _d("plague", "Plague", "A20", severe=True),
    _d("anthrax", "Anthrax", "A22", severe=True),
    _d("brucellosis", "Brucellosis", "A23", 365),
    _d("leptospirosis", "Leptospirosis", "A27"),
    _d("leprosy", "Leprosy", "A30", None),
    _d("neonatal-tetanus", "Tetanus neonatorum", "A33"),
    _d("diphtheria", "Diphtheria", "A36", severe=True),
    _d("pertussis", "Whooping cough", "A37"),
    _d("scarlet-fever", "Scarlet fever", "A38"),
    _d("meningococcal", "Meningococcal infection", "A39"),
    _d("syphilis", "Syphilis", "A50 A51 A52 A53", 365),
    _d("gonorrhoea", "Gonococcal infection", "A54"),
    _d("typhus", "Typhus fever", "A75"),
    _d("polio", "Acute poliomyelitis", "A80", severe=True),
    _d("rabies", "Rabies", "A82", severe=True),
    _d("japanese-encephalitis", "Japanese encephalitis", "A83.0"),
    _d("dengue", "Dengue", "A90 A91 A97"),
    _d("ebola", "Ebola virus disease", "A98.4", severe=True),
    _d("hfrs", "Haemorrhagic fever with renal syndrome", "A98.5"),
    _d("mpox", "Mpox", "B04"),
    _d("measles", "Measles", "B05", None),
    _d("rubella", "Rubella", "B06", None),
    _d("hfmd", "Hand, foot and mouth disease", "B08.4"),
    _d("hepatitis-a", "Acute hepatitis A", "B15", None),
    _d("hepatitis-b", "Hepatitis B", "B16 B18.0 B18.1", None),
    _d("hepatitis-c", "Hepatitis C", "B17.1 B18.2", None),
    _d("hepatitis-e", "Acute hepatitis E", "B17.2", None),
    _d("hiv", "HIV disease and asymptomatic HIV infection", "B20 B21 B22 B23 B24 Z21", None),
    _d("mumps", "Mumps", "B26", None),
    _d("malaria", "Malaria", "B50 B51 B52 B53 B54"),
    _d("kala-azar", "Visceral leishmaniasis", "B55.0", 365),
    _d("schistosomiasis", "Schistosomiasis", "B65", 365),
    _d("echinococcosis", "Echinococcosis", "B67", None),
    _d("avian-influenza", "Influenza due to identified zoonotic or pandemic virus", "J09",
       30, severe=True),
    _d("influenza", "Influenza", "J10 J11", 30),
    _d("sars", "Severe acute respiratory syndrome", "U04", severe=True),
    _d("covid-19", "COVID-19", "U07.1 U07.2", 30),
)


class CatalogError(ValueError):
    """A catalog document that cannot be used (the message says why)."""


@dataclass(frozen=True)
class Catalog:
    """Diseases by id, and the longest-prefix match from an ICD-10 code to a disease."""

    diseases: tuple[Disease, ...] = DEFAULT_CATALOG

    def __post_init__(self) -> None:
        seen: dict[str, str] = {}
        ids = set()
        for d in self.diseases:
            if not DISEASE_ID.match(d.id) or d.id in ids:
                raise CatalogError(f"disease id {d.id!r} is invalid or repeated")
            ids.add(d.id)
            if not d.codes or not 1 <= len(d.name) <= 100:
                raise CatalogError(f"disease {d.id}: needs a name and at least one code")
            if d.episode_days is not None and not 1 <= d.episode_days <= 3650:
                raise CatalogError(f"disease {d.id}: episode_days {d.episode_days} not in "
                                   "1..3650 or null")
            for code in d.codes:
                if not ICD10.match(code):
                    raise CatalogError(f"disease {d.id}: {code!r} is not an ICD-10 code")
                if _key(code) in seen:
                    raise CatalogError(f"code {code} is listed for {seen[_key(code)]} and "
                                       f"{d.id}")
                seen[_key(code)] = d.id

    def get(self, disease_id: str) -> Disease | None:
        for d in self.diseases:
            if d.id == disease_id:
                return d
        return None

    def match(self, icd10: str) -> Disease | None:
        """The disease whose longest code prefix covers ``icd10`` (normalised), or None."""
        key = _key(normalise_icd10(icd10))
        best: tuple[int, Disease] | None = None
        for d in self.diseases:
            for code in d.codes:
                k = _key(code)
                if key.startswith(k) and (best is None or len(k) > best[0]):
                    best = (len(k), d)
        return None if best is None else best[1]

    def ids(self) -> list[str]:
        return [d.id for d in self.diseases]

    def severe(self) -> frozenset[str]:
        return frozenset(d.id for d in self.diseases if d.severe)

    def to_doc(self) -> list[dict[str, Any]]:
        return [d.to_doc() for d in self.diseases]

    @classmethod
    def from_doc(cls, docs: Sequence[dict[str, Any]]) -> Catalog:
        try:
            return cls(tuple(Disease.from_doc(d) for d in docs))
        except (KeyError, TypeError) as exc:
            raise CatalogError(f"catalog entry is malformed ({exc!r}); want id, name, codes, "
                               "episode_days, severe") from None

    @classmethod
    def of(cls, diseases: Iterable[Disease]) -> Catalog:
        return cls(tuple(diseases))
