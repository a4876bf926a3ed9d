"""Unit conversion into canonical units, pseudonyms and date shifting."""

from __future__ import annotations

import hashlib
import stat
from datetime import date
from pathlib import Path

import pytest

from medledger.gateway.deid import Pseudonymizer, PseudonymKey, generalise_birth
from medledger.gateway.errors import GatewayError
from medledger.gateway.loinc import BY_KEY
from medledger.gateway.units import to_ucum


@pytest.mark.parametrize(("analyte", "value", "unit", "want"), [
    ("glucose", 100, "mg/dL", 5.55),          # 100 / 18.0156
    ("glucose", 5.6, "mmol/L", 5.6),
    ("creatinine", 1.0, "mg/dL", 88.4),
    ("cholesterol", 200, "mg/dL", 5.17),
    ("hemoglobin", 13.5, "g/dL", 135.0),
    ("hba1c", 53, "mmol/mol", 7.0),           # IFCC 53 mmol/mol ≈ NGSP 7.0 %
    ("wbc", 7.2, "10*3/uL", 7.2),
    ("potassium", 4.1, "meq/L", 4.1),
])
def test_conversion(analyte: str, value: float, unit: str, want: float) -> None:
    assert BY_KEY[analyte].convert(value, unit) == pytest.approx(want, rel=5e-3)


def test_unit_aliases() -> None:
    assert to_ucum(" MG/DL ") == "mg/dL"
    assert to_ucum("µmol/L") == "umol/L"
    assert to_ucum("x10^9/L") == "10*9/L"
    assert to_ucum("mmol") is None
    assert BY_KEY["potassium"].convert(4.0, "U/L") is None


KEY = PseudonymKey("k1", b"\x01" * 32)
RID = "11010519491231002X"


def test_pseudonym_is_keyed_stable_and_versioned() -> None:
    p = Pseudonymizer(KEY)
    a = p.pseudonym("cn-rid", RID)
    assert a == Pseudonymizer(KEY).pseudonym("cn-rid", RID)
    assert a.startswith("k1-") and len(a) == 35
    assert a[3:] not in hashlib.sha256(RID.encode()).hexdigest()
    rotated = Pseudonymizer(PseudonymKey("k2", b"\x02" * 32)).pseudonym("cn-rid", RID)
    assert rotated[3:] != a[3:]
    other_secret = Pseudonymizer(PseudonymKey("k1", b"\x03" * 32)).pseudonym("cn-rid", RID)
    assert other_secret != a
    assert p.pseudonym("mrn:hosp-a", RID) != a


def test_date_shift_is_per_patient_nonzero_and_keeps_intervals() -> None:
    p = Pseudonymizer(KEY)
    shifts = {p.shift_days(f"k1-{i:032x}") for i in range(500)}
    assert 0 not in shifts and min(shifts) >= -50 and max(shifts) <= 50 and len(shifts) > 50
    who = p.pseudonym("cn-rid", RID)
    d1, d2 = date(2023, 1, 10), date(2023, 3, 1)
    assert (p.shift(who, d2) - p.shift(who, d1)) == d2 - d1
    assert p.shift(who, d1) != d1


def test_birth_generalised_to_year_and_90_plus_removed() -> None:
    today = date(2026, 1, 1)
    assert generalise_birth(date(1980, 7, 3), today) == "1980"
    assert generalise_birth(date(1935, 1, 1), today) is None
    assert generalise_birth(None, today) is None


def test_key_file_roundtrip_and_refusals(tmp_path: Path) -> None:
    path = tmp_path / "pk.json"
    key = PseudonymKey.generate(path, "k7")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert PseudonymKey.load(path) == key
    with pytest.raises(FileExistsError):
        PseudonymKey.generate(path)
    with pytest.raises(GatewayError):
        PseudonymKey("k1", b"short")
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    with pytest.raises(GatewayError, match="want 0600"):
        PseudonymKey.load(bad)
    bad.chmod(0o600)
    with pytest.raises(GatewayError, match="cannot read"):
        PseudonymKey.load(bad)
