"""Source profiles: declarative, versioned TOML files that say how one hospital export maps to
the gateway's data elements (ADR 0015).

Example (a lab export)::

    [profile]
    id = "hosp-b-labs"            # stable name; with version it is recorded on every output
    version = "2026.1"
    site = "hosp-b"               # the owning organisation (the ledger org id)
    source_system = "LIS-2"
    kind = "lab"                  # diagnosis | lab
    format = "tsv"                # csv | tsv | xlsx
    encoding = "gbk"              # declared, never detected; decoded strictly
    date_formats = ["zh", "%Y-%m-%d"]

    [columns]                     # data element = column header in the file
    record_key = "检验单号"
    patient_id = "身份证号"
    ...

    [values.sex]                  # value maps: source value → FHIR code
    "男" = "male"

    [units]                       # extra unit spellings → UCUM
    "mmol/L(空腹)" = "mmol/L"

    [terminology.diagnoses]       # the hospital's own synonyms → WHO ICD-10 code
    [terminology.labs]            # test names → analyte key (medledger.gateway.loinc)

Data elements: ``record_key`` (required), ``patient_id`` (resident ID; or ``mrn``), ``name``,
``phone``, ``address``, ``birth_date``, ``sex``, ``date``; diagnoses: ``dx_code`` and/or
``dx_term``; labs: ``test_code`` and/or ``test_name``, ``value``, ``unit``; medication orders
and dispenses: ``med_code``, ``med_system``, ``med_name``.
"""

from __future__ import annotations

import codecs
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from medledger.gateway.errors import GatewayError
from medledger.gateway.loinc import BY_KEY
from medledger.gateway.units import to_ucum

IDENTIFIER_ELEMENTS = ("patient_id", "mrn", "name", "phone", "address")
DX_ELEMENTS = ("dx_code", "dx_term")
LAB_ELEMENTS = ("test_code", "test_name", "value", "unit")
MED_ELEMENTS = ("med_code", "med_system", "med_name")
ELEMENTS = ("record_key", *IDENTIFIER_ELEMENTS, "birth_date", "sex", "date",
            *DX_ELEMENTS, *LAB_ELEMENTS, *MED_ELEMENTS)
KINDS = ("diagnosis", "lab", "medication_request", "medication_dispense")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Header(_Strict):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")
    version: str = Field(pattern=r"^[A-Za-z0-9._-]{1,32}$")
    site: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    source_system: str = Field(pattern=r"^[A-Za-z0-9._:/ -]{1,64}$")
    kind: Literal["diagnosis", "lab", "medication_request", "medication_dispense"]
    format: Literal["csv", "tsv", "xlsx"] = "csv"
    encoding: str = "utf-8"
    delimiter: str | None = None
    date_formats: list[str] = Field(default_factory=lambda: ["%Y-%m-%d"])
    default_unit: str | None = None

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, v: str) -> str:
        try:
            return codecs.lookup(v).name
        except LookupError:
            raise ValueError(f"unknown encoding {v!r}") from None


class Terminology(_Strict):
    diagnoses: dict[str, str] = Field(default_factory=dict)
    labs: dict[str, str] = Field(default_factory=dict)


class Profile(_Strict):
    profile: Header
    columns: dict[str, str]
    values: dict[str, dict[str, str]] = Field(default_factory=dict)
    units: dict[str, str] = Field(default_factory=dict)
    terminology: Terminology = Field(default_factory=Terminology)

    @field_validator("columns")
    @classmethod
    def _known_elements(cls, v: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(v) - set(ELEMENTS))
        if unknown:
            raise ValueError(f"unknown data elements {unknown}; want some of {list(ELEMENTS)}")
        if "record_key" not in v:
            raise ValueError("columns.record_key is required")
        if "patient_id" not in v and "mrn" not in v:
            raise ValueError("columns needs patient_id or mrn")
        return v

    @field_validator("units")
    @classmethod
    def _ucum_targets(cls, v: dict[str, str]) -> dict[str, str]:
        for src, target in v.items():
            if to_ucum(target) is None:
                raise ValueError(f"units.{src!r} → {target!r} is not a known UCUM unit")
        return v

    @field_validator("terminology")
    @classmethod
    def _lab_keys(cls, v: Terminology) -> Terminology:
        for name, key in v.labs.items():
            if key not in BY_KEY:
                raise ValueError(f"terminology.labs.{name!r} → {key!r}; want one of "
                                 f"{sorted(BY_KEY)}")
        return v

    @property
    def label(self) -> str:
        """``id@version``: what every output record carries as its profile version."""
        return f"{self.profile.id}@{self.profile.version}"

    @property
    def delimiter(self) -> str:
        return self.profile.delimiter or ("\t" if self.profile.format == "tsv" else ",")

    def check_kind(self, where: str = "") -> None:
        kind = self.profile.kind
        need = (DX_ELEMENTS if kind == "diagnosis" else ("value",) if kind == "lab" else
                ("med_code", "med_name"))
        if not any(e in self.columns for e in need):
            raise GatewayError(f"profile {where or self.label}: a {self.profile.kind} profile "
                               f"needs one of {list(need)} in [columns]")


def load_profile(path: Path) -> Profile:
    """Parse and check a profile file; ``GatewayError`` names the file and the problem."""
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise GatewayError(f"cannot read profile {path}: {exc}") from None
    try:
        prof = Profile.model_validate(doc)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise GatewayError(f"profile {path}: {where}: {first['msg']}") from None
    prof.check_kind(str(path))
    return prof
