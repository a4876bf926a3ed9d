"""The ``signals`` contract and the monitor, in memory: evidence checks, grades, lifecycle,
and a detection run over counts that the ``case_reports`` contract kept."""

from __future__ import annotations

import os
from datetime import date, timedelta
from typing import Any

import numpy as np
import pytest
from tests.unit.surveillance.harness import (
    CDC_EPI,
    CDC_SERVICE,
    DAY_MS,
    GATEWAY_A,
    Harness,
)

from medledger.contracts.context import Caller
from medledger.crypto.keys import b64, key_id
from medledger.surveillance import monitor, views
from medledger.surveillance.calendar import iso_week, week_monday
from medledger.surveillance.mpm import MpmThresholds
from medledger.surveillance.reports import CaseReports
from medledger.surveillance.signals import Signals, signal_id

WEEK = "2025-W47"


def raise_args(**kw: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "disease": "shigellosis", "stratum": {"district": "110105"}, "districts": ["110105"],
        "method": "farrington-flexible", "parameters": {"alpha": "0.05", "noPeriods": 10},
        "red_parameters": {"alpha": "0.01"}, "week": WEEK, "first_week": "2025-W44",
        "counts": [1, 0, 2, 9], "threshold": "4.5", "red_threshold": "9.25", "grade": "yellow",
        "as_of_height": 1}
    args.update(kw)
    return args


def harness() -> Harness:
    return Harness((CaseReports(), Signals()))


def test_raise_records_the_evidence_under_a_derived_id() -> None:
    h = harness()
    out = h.call(CDC_SERVICE, "signals", "raise_signal", raise_args())
    sid = signal_id("shigellosis", {"district": "110105"}, "farrington-flexible", WEEK)
    assert out == {"signal": sid}
    sig = h.get(f"signals/signal/{sid}")
    assert sig["series"] == {"first_week": "2025-W44", "counts": [1, 0, 2, 9]}
    assert (sig["observed"], sig["grade"], sig["status"], sig["log"]) == (9, "yellow", "open", [])
    assert h.code_of(CDC_SERVICE, "signals", "raise_signal", raise_args()) == "already_exists"


@pytest.mark.parametrize(("change", "message"), [
    ({"grade": "red"}, "supports yellow, not red"),
    ({"counts": [1, 0, 2, 4]}, "supports no alert"),
    ({"counts": [1, 0, 2, 10], "grade": "yellow"}, "supports red"),
    ({"counts": [0, 9]}, "2 counts for 4 weeks"),
    ({"first_week": "2025-W48"}, "after week"),
    ({"week": "2025-W53"}, "has no week 53"),
    ({"districts": ["110105", "110106"]}, "that district only"),
    ({"stratum": {"region": "1101"}, "districts": []}, "lists its districts"),
    ({"stratum": {"district": "110105", "sex": "male"}}, "at most one"),
    ({"as_of_height": 99}, "after this block"),
])
def test_evidence_that_does_not_support_the_alert_is_refused(change: dict[str, Any],
                                                            message: str) -> None:
    h = harness()
    from medledger.contracts.base import ContractError

    with pytest.raises(ContractError, match=message) as err:
        h.call(CDC_SERVICE, "signals", "raise_signal", raise_args(**change))
    assert err.value.code == "bad_args"
    assert h.scan("signals/") == {}


def test_cusum_alarms_at_its_bound_others_above_it() -> None:
    h = harness()
    h.call(CDC_SERVICE, "signals", "raise_signal", raise_args(
        method="cusum", counts=[1, 0, 2, 5], threshold="5", red_threshold="7"))
    assert h.code_of(CDC_SERVICE, "signals", "raise_signal", raise_args(
        method="ears-c1", counts=[1, 0, 2, 5], threshold="5", red_threshold="7")) == "bad_args"


def test_verification_and_response_are_logged_by_the_raising_cdc() -> None:
    h = harness()
    sid = h.call(CDC_SERVICE, "signals", "raise_signal", raise_args())["signal"]
    assert h.code_of(CDC_SERVICE, "signals", "verify_signal", {
        "signal": sid, "outcome": "confirmed", "note": "x"}) == "forbidden"  # a service
    assert h.code_of(GATEWAY_A, "signals", "raise_signal", raise_args()) == "forbidden"
    other = Caller("cdc2/epi", "cdc2", "physician", "cdc")
    assert h.code_of(other, "signals", "verify_signal", {
        "signal": sid, "outcome": "confirmed", "note": "x"}) == "forbidden"
    assert h.code_of(CDC_EPI, "signals", "respond", {
        "signal": sid, "action": "investigation", "note": "x"}) == "invalid_state"
    h.call(CDC_EPI, "signals", "verify_signal", {"signal": sid, "outcome": "confirmed",
                                                 "note": "cluster at one school"})
    h.call(CDC_EPI, "signals", "respond", {"signal": sid, "action": "investigation",
                                           "note": "field team sent"})
    h.call(CDC_EPI, "signals", "respond", {"signal": sid, "action": "closed",
                                           "note": "outbreak over"})
    sig = h.get(f"signals/signal/{sid}")
    assert sig["status"] == "closed"
    assert [(e["action"], e["by"]) for e in sig["log"]] == [
        ("confirmed", "cdc/epi"), ("investigation", "cdc/epi"), ("closed", "cdc/epi")]
    assert h.code_of(CDC_EPI, "signals", "verify_signal", {
        "signal": sid, "outcome": "dismissed", "note": "x"}) == "invalid_state"
    assert h.code_of(CDC_EPI, "signals", "respond", {
        "signal": "0" * 32, "action": "closed", "note": "x"}) == "not_found"


# ------------------------------------------------------------------ the monitor


def _report(h: Harness, n: int, disease_code: str, district: str, day: date,
            sex: str = "female", age_band: str = "5-14") -> None:
    h.call(GATEWAY_A, "case_reports", "submit", {
        "report_id": f"r{n}", "cdc": "cdc", "disease_code": disease_code,
        "onset_date": day.isoformat(), "diagnosis_date": day.isoformat(), "district": district,
        "age_band": age_band, "sex": sex, "lab_status": "confirmed", "patient": f"{n:064x}",
        "reporter": os.urandom(32).hex(), "kex_kid": key_id(h.cdc_key.public),
        "payload": b64(os.urandom(64))})


def seeded_outbreak() -> tuple[Harness, str]:
    """Six years of seasonal shigellosis in three districts, in three age bands; an outbreak in
    110105 in the last week (boys aged 5-14); one cholera case in 110106 that week."""
    h = Harness((CaseReports(), Signals()), time_ms=1_764_201_600_000 + DAY_MS)
    rng = np.random.default_rng(7)
    bands = np.random.default_rng(8)  # a stream of its own: the counts stay as they were
    last_monday = date(2025, 11, 17)
    n = 0
    for week in range(313):
        monday = last_monday - timedelta(weeks=312 - week)
        mean = 3 * np.exp(0.6 * np.sin(2 * np.pi * week / 52))
        for district in ("110105", "110106", "110201"):
            for _ in range(int(rng.poisson(mean))):
                n += 1
                _report(h, n, "A03.9", district, monday + timedelta(days=int(rng.integers(7))),
                        age_band=str(bands.choice(["5-14", "25-44", "65+"])))
    for _ in range(25):
        n += 1
        _report(h, n, "A03.1", "110105", last_monday + timedelta(days=2), sex="male")
    _report(h, n + 1, "A00.1", "110106", last_monday + timedelta(days=4))
    return h, iso_week(last_monday)


def test_monitor_finds_the_outbreak_grades_it_and_the_contract_accepts_the_evidence() -> None:
    h, week = seeded_outbreak()
    result = monitor.run(h.state, week, as_of_height=h.height)
    found = {(s["disease"], tuple(s["stratum"].items())): s for s in result.signals}
    outbreak = found[("shigellosis", (("district", "110105"),))]
    assert outbreak["grade"] == "red" and outbreak["method"] == "farrington-flexible"
    assert outbreak["counts"][-1] >= 25 and len(outbreak["counts"]) == 313
    assert float(outbreak["threshold"]) < outbreak["counts"][-1]
    assert ("shigellosis", (("region", "1101"),)) in found  # 110105 + 110106
    assert ("shigellosis", (("sex", "male"),)) in found
    assert ("shigellosis", (("age_band", "5-14"),)) in found  # stratified by age group too
    assert ("shigellosis", (("age_band", "65+"),)) not in found
    assert ("shigellosis", (("district", "110201"),)) not in found
    assert ("shigellosis", (("district", "110106"),)) not in found
    cholera = found[("cholera", (("district", "110106"),))]
    assert (cholera["method"], cholera["grade"]) == ("single-case", "red")
    for s in result.signals:  # the contract agrees with every grade, in exact decimals
        h.call(CDC_SERVICE, "signals", "raise_signal", s)
    sid = signal_id("shigellosis", {"district": "110105"}, "farrington-flexible", week)
    sig = views.signal(h.state, sid)
    assert sig is not None
    rows = views.signal_line_list(h.state, sig)
    assert len(rows) == sig["observed"]
    assert sum(r["sex"] == "male" and r["disease_code"] == "A03.1" for r in rows) == 25
    assert {r["district"] for r in rows} == {"110105"} and all(r["patient"] for r in rows)


def test_params_round_trip_for_the_recheck() -> None:
    opts = {**monitor.NOUFAILY, "alpha": 0.01, "limit54": (5, 4), "m": "glm"}
    assert monitor._options(monitor._params(opts)) == opts
    assert monitor._params(opts)["pThresholdTrend"] == "1.0"


def test_monitor_applies_mpm_percentiles_per_disease_and_region() -> None:
    """CIDARS tunes the moving percentile per disease and per province: with MPM as the
    monitor's detector, each stratum's series is tested at the most specific percentile of the
    tables, the percentile used is recorded in the signal, and the evidence re-runs from it."""
    h, week = seeded_outbreak()
    mpm = monitor.Detector("mpm", {"b": 5, "w": 2, "percentile": 80.0},
                           {"b": 5, "w": 2, "percentile": 95.0})
    yellow = MpmThresholds(by_disease={"shigellosis": 90.0}, by_disease_region={
        ("shigellosis", "110105"): 75.0, ("shigellosis", "1101"): 85.0})
    red = MpmThresholds(by_disease={"shigellosis": 99.0},
                        by_disease_region={("shigellosis", "1101"): 50.0})
    config = monitor.MonitorConfig(detector=mpm, fallback=None, mpm_thresholds=yellow,
                                   mpm_red_thresholds=red)
    result = monitor.run(h.state, week, as_of_height=h.height, config=config)
    found = {(s["disease"], tuple(s["stratum"].items())): s for s in result.signals}
    outbreak = found[("shigellosis", (("district", "110105"),))]
    assert outbreak["method"] == "mpm" and outbreak["grade"] == "red"
    # district entry for yellow; red falls back to the region's 50, raised to the yellow 75
    assert (outbreak["parameters"]["percentile"], outbreak["red_parameters"]["percentile"]) \
        == ("75.0", "75.0")
    region = found[("shigellosis", (("region", "1101"),))]
    assert region["parameters"]["percentile"] == "85.0"
    boys = found[("shigellosis", (("sex", "male"),))]
    assert (boys["parameters"]["percentile"], boys["red_parameters"]["percentile"]) == (
        "90.0", "99.0")
    neighbour = monitor._Series({"district": "110106"}, ["110106"], [])
    used = monitor._mpm_detector(config, mpm, neighbour, "shigellosis")
    assert used.options["percentile"] == 85.0  # no district entry: its region's
    other = monitor._mpm_detector(config, mpm, neighbour, "cholera")
    assert (other.options["percentile"], other.red_options["percentile"]) == (80.0, 95.0)
    for s in result.signals:
        h.call(CDC_SERVICE, "signals", "raise_signal", s)  # the contract agrees with each grade
        if s["method"] == "mpm":  # what recheck does: the recorded parameters reproduce it
            again = monitor._evaluate(monitor.Detector(
                "mpm", monitor._options(s["parameters"]), monitor._options(s["red_parameters"])),
                monitor._Series(s["stratum"], s["districts"], s["counts"]),
                tuple(week_monday(s["first_week"]) + timedelta(weeks=i)
                      for i in range(len(s["counts"]))))
            assert again is not None and (again["threshold"], again["grade"]) == (
                s["threshold"], s["grade"])
