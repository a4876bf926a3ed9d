"""Profiles are refused with the file, key and problem named; the synthetic ones load."""

from __future__ import annotations

from pathlib import Path

import pytest

from medledger.gateway.errors import GatewayError
from medledger.gateway.profile import load_profile
from medledger.gateway.synth import PROFILES

GOOD = PROFILES["hosp-b/labs.tsv"]


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "p.toml"
    p.write_text(text, encoding="utf-8")
    return p


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_shipped_profiles_load(tmp_path: Path, name: str) -> None:
    prof = load_profile(_write(tmp_path, PROFILES[name]))
    assert prof.label.startswith(prof.profile.id + "@")


@pytest.mark.parametrize(("edit", "message"), [
    (('encoding = "gbk"', 'encoding = "klingon"'), "unknown encoding"),
    (('record_key = "检验单号"', 'record_kee = "检验单号"'), "unknown data elements"),
    (('kind = "lab"', 'kind = "labs"'), "profile.kind"),
    (('patient_id = "身份证号"', ''), "patient_id or mrn"),
    (('[columns]', '[units]\n"mg%%" = "furlongs"\n\n[columns]'), "not a known UCUM unit"),
    (('value = "结果"\n', ''), "needs one of"),
    (('site = "hosp-b"', 'site = "Hosp B"'), "profile.site"),
])
def test_bad_profiles_are_refused(tmp_path: Path, edit: tuple[str, str], message: str) -> None:
    text = GOOD.replace(*edit)
    assert text != GOOD
    with pytest.raises(GatewayError, match=message) as exc:
        load_profile(_write(tmp_path, text))
    assert "p.toml" in exc.value.message


def test_unreadable_toml(tmp_path: Path) -> None:
    with pytest.raises(GatewayError, match="cannot read profile"):
        load_profile(_write(tmp_path, "[profile\n"))
