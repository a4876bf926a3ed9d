"""The gateway's FHIR checks: the shape-cached fast path agrees with validating every resource
with fhir.resources, and the gateway's own checks catch what the library accepts."""

from __future__ import annotations

import copy
import random
from typing import Any

import pytest

from medledger.gateway import fhir, loinc
from medledger.gateway.errors import Reason, RowRejected

PAT = "k1-0123456789abcdef0123456789abcdef"


def _resources(rng: random.Random, n: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i in range(n):
        a = rng.choice(loinc.QUANTITATIVE)
        out.append(fhir.observation(f"lab-{i:040x}", PAT, a, round(rng.uniform(a.low, a.high),
                                                                    2),
                                    f"2023-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}"))
        out.append(fhir.condition(f"dia-{i:040x}", PAT, rng.choice(["I10", "E11.9", "J18.9"]),
                                  rng.choice([None, "E11.900"]), "2024-02-29"))
        out.append(fhir.patient(PAT, "k1", rng.choice(["male", "female"]),
                                rng.choice([None, "1970"])))
    return out


def _breakages() -> list[tuple[str, dict[str, Any]]]:
    obs = fhir.observation("lab-1", PAT, loinc.BY_KEY["glucose"], 5.5, "2023-01-01")
    bad_date = copy.deepcopy(obs)
    bad_date["effectiveDateTime"] = "2023-02-30"
    bad_id = copy.deepcopy(obs)
    bad_id["id"] = "lab 1"
    empty = copy.deepcopy(obs)
    empty["code"]["coding"][0]["display"] = ""
    return [("impossible date", bad_date), ("id with a space", bad_id),
            ("empty string", empty)]


def _outcome(v: fhir.Validator, res: dict[str, Any]) -> str:
    try:
        v.structure(res)
    except RowRejected as exc:
        return str(exc.reason)
    return "ok"


def test_fast_path_agrees_with_full_validation() -> None:
    fast, full = fhir.Validator(), fhir.Validator(full=True)
    resources = _resources(random.Random(3), 60)
    for res in resources:
        assert _outcome(fast, res) == _outcome(full, res) == "ok"
    assert fast.model_validations < len(resources) // 4
    assert full.model_validations == len(resources)
    for name, broken in _breakages():
        assert _outcome(full, broken) == "invalid_fhir", name
        assert _outcome(fast, broken) == "invalid_fhir", name
    # the fast path is stricter in one documented way: strings with outer whitespace
    spaced = fhir.observation("lab-1", PAT, loinc.BY_KEY["glucose"], 5.5, "2023-01-01")
    spaced["valueQuantity"]["unit"] = " mmol/L"
    assert (_outcome(full, spaced), _outcome(fast, spaced)) == ("ok", "invalid_fhir")


@pytest.mark.parametrize(("mutate", "reason"), [
    (lambda r: r.update(status="finished"), Reason.INVALID_FHIR),     # library accepts it
    (lambda r: r.update(dataAbsentReason={"text": "x"}), Reason.INVALID_FHIR),  # obs-6
    (lambda r: r.update(subject={"reference": "Patient/k1-nobody"}), Reason.INVALID_FHIR),
    (lambda r: r["valueQuantity"].update(code="mg/dL", unit="mg/dL"), Reason.UNIT_CONFLICT),
    (lambda r: r["valueQuantity"].update(value=400.0), Reason.IMPLAUSIBLE_VALUE),
])
def test_own_checks_on_observations(mutate: Any, reason: Reason) -> None:
    v = fhir.Validator()
    res = fhir.observation("lab-1", PAT, loinc.BY_KEY["glucose"], 5.5, "2023-01-01")
    v.check(res, lambda p: p == PAT)
    mutate(res)
    with pytest.raises(RowRejected) as exc:
        v.check(res, lambda p: p == PAT)
    assert exc.value.reason is reason


def test_gender_f_is_refused_though_the_library_accepts_it() -> None:
    v = fhir.Validator(full=True)
    pat = fhir.patient(PAT, "k1", "F", None)
    v.structure(pat)                                   # fhir.resources accepts "F" ...
    with pytest.raises(RowRejected, match="gender"):   # ... the gateway does not
        v.check(pat, lambda _: True)


def test_condition_needs_a_known_who_code() -> None:
    v = fhir.Validator()
    res = fhir.condition("dia-1", PAT, "I10", None, "2023-01-01")
    v.check(res, lambda _: True)
    res["code"]["coding"][0]["code"] = "I99.9"
    with pytest.raises(RowRejected, match="WHO"):
        v.check(res, lambda _: True)
