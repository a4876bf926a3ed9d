"""Case reports and signals through a real node: HTTP read views with member authentication,
the line list restricted to CDC staff, a signal recomputed from the ledger, and a full verify
that replays both contracts."""

from __future__ import annotations

import os
import warnings
from typing import Any

import pytest

from medledger.api.app import create_app
from medledger.api.auth import sign_request
from medledger.installed import default_registry
from medledger.ledger.verify import verify_store
from medledger.surveillance import casefile, monitor, views
from medledger.surveillance.casefile import CaseFields
from tests.conftest import Consortium, Ledger

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

pytestmark = pytest.mark.integration
PKEY = os.urandom(32)


def report(lg: Ledger, cons: Consortium, report_id: str, person: str, day: str,
           gateway: str = "hosp-a/gw", **kw: Any) -> Any:
    org = gateway.split("/")[0]
    fields = CaseFields(**{"disease_code": "A03.9", "onset_date": day, "diagnosis_date": day,
                           "district": "110105", "age_band": "5-14", "sex": "male",
                           "lab_status": "pending", **kw})
    args = casefile.seal_report(
        chain_id=lg.node.chain_id, org=org, report_id=report_id, cdc="cdc",
        cdc_kex_key=cons.ring.agreement["cdc"].public, fields=fields,
        patient_id=("nid", person), patient_details={"name": "N"}, pseudonym_key=PKEY,
        physician="hosp-a/dr", physician_key=lg.ring.signing["hosp-a/dr"])
    return lg.call(gateway, "case_reports", "submit", args)


def get(client: TestClient, lg: Ledger, member: str, path: str) -> Any:
    headers = sign_request("GET", path, b"", member, lg.ring.signing[member])
    return client.get(path, headers=headers)


def test_reports_counts_signals_and_line_list_over_http(ledger: Ledger,
                                                        consortium: Consortium) -> None:
    lg = ledger
    assert report(lg, consortium, "r1", "P1", "2025-11-18").value["case"] == "new"
    assert report(lg, consortium, "b1", "P1", "2025-11-19", gateway="hosp-b/gw").value[
        "case"] == "linked"
    for i in range(2, 8):
        assert report(lg, consortium, f"r{i}", f"P{i}", "2025-11-20").ok
    refused = lg.call("hosp-a/dr", "case_reports", "submit", {})
    assert refused.code in ("forbidden", "bad_args")
    client = TestClient(create_app(lg.node))

    resp = get(client, lg, "hosp-b/gw",
               "/v1/surveillance/counts?disease=shigellosis&from=2025-W45&to=2025-W48")
    assert resp.status_code == 200, resp.text
    assert resp.json()["counts"] == [0, 0, 7, 0]  # P1 reported twice counts once
    resp = get(client, lg, "research/root", "/v1/surveillance/counts?disease=shigellosis"
               "&by=day&from=2025-11-17&to=2025-11-21")
    assert resp.json()["counts"] == [0, 1, 0, 6, 0]
    bad = get(client, lg, "hosp-b/gw",
              "/v1/surveillance/counts?disease=shigellosis&from=2025-W48&to=2025-W45")
    assert bad.status_code == 422 and bad.json()["code"] == "bad_args"

    run = monitor.run(lg.store, "2025-W47", lg.node.height,
                      monitor.MonitorConfig(history=20, detector=monitor.FALLBACK_DETECTOR,
                                            fallback=None, by_age_and_sex=False))
    [found] = run.signals
    assert (found["stratum"], found["method"], found["grade"]) == (
        {"district": "110105"}, "ears-c2", "red")
    raised = lg.call("cdc/root", "signals", "raise_signal", found)
    assert raised.ok, raised
    sid = raised.value["signal"]
    assert get(client, lg, "insurer/root", "/v1/surveillance/signals").json()["signals"][0][
        "id"] == sid
    path = f"/v1/surveillance/signals/{sid}/line-list"
    rows = get(client, lg, "cdc/root", path).json()["rows"]
    assert len(rows) == 7 and {r["report"] for r in rows} >= {"hosp-a/r1"}
    for outsider in ("hosp-a/gw", "cdc/analyst"):  # a hospital; a CDC researcher
        denied = get(client, lg, outsider, path)
        assert denied.status_code == 403 and denied.json()["code"] == "forbidden"

    more = report(lg, consortium, "r9", "P9", "2025-11-20")  # counts move on after the alert
    assert more.ok
    sig = views.signal(lg.store, sid)
    assert sig is not None
    assert monitor.recheck(lg.store, lg.store, sig) == []  # from the ledger at as_of_height
    forged = {**sig, "series": {**sig["series"], "counts": [*sig["series"]["counts"][:-1], 8]}}
    assert "series differs" in monitor.recheck(lg.store, lg.store, forged)[0]

    assert lg.call("cdc/root", "signals", "verify_signal", {
        "signal": sid, "outcome": "confirmed", "note": "school cluster"}).ok
    record = lg.state("case_reports/report/hosp-a/r1")
    lg.ok("cdc/root", "case_reports", "verify", {"org": "hosp-a", "report_id": "r1"})
    opened = casefile.open_report(lg.node.chain_id, record,
                                  consortium.ring.agreement["cdc"].secret, lg.store)
    assert opened.ok and opened.physician == "hosp-a/dr"
    report_ = verify_store(lg.store, default_registry())
    assert report_.ok, report_
