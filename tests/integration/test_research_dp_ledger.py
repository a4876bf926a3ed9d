"""DP GLM, DP Cox and DP Kaplan–Meier on a real embedded ledger (ADR 0053): a noisy Newton
fit is charged whole on its first recorded query, its later rounds are recorded at no charge,
a DP KM release is charged once, an overspend is refused before any site is asked (also after a
restart), and ``medledger research verify`` matches every hash of the bundle."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from medledger.cli.main import app
from medledger.client.client import Client
from medledger.research import audit
from medledger.research.disclosure import Policy
from medledger.research.errors import ResearchError
from medledger.research.federation import Federation
from medledger.research.recorder import LedgerRecorder
from medledger.research.site import Site
from medledger.research.synth import site_tables
from medledger.workspace import Workspace
from tests.support.research_vault import caller, enroll_study_members

pytestmark = pytest.mark.integration
HOSPITALS = ["hosp-a", "hosp-b", "hosp-c"]
BOUNDS = {"age": (0.0, 100.0), "smoker": (0.0, 1.0)}
GRID = [float(d) for d in range(1, 731)]


def _state(ws: Workspace, key: str) -> Any:
    store = ws.store()
    try:
        return json.loads(store.get_state(f"studies/{key}") or b"null")
    finally:
        store.close()


def test_dp_fit_and_km_on_the_ledger(tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "ws", "research-dp")
    ring = ws.keyring()
    bundle = tmp_path / "bundle"
    sites = [Site(h, t, Policy()) for h, t in
             zip(HOSPITALS, site_tables([400, 600, 800], seed=5), strict=True)]
    with ws.node(max_wait=0.001) as node:
        def client(member: str) -> Client:
            return Client(node, node.chain_id, member, ring.signing[member])

        enroll_study_members(client, ring, HOSPITALS)
        dr = client("research/dr")
        assert dr.call("studies", "register", {
            "study": "s1", "protocol": "ab" * 32, "ethics_ref": "IRB-1", "sites": HOSPITALS,
            "analyses": ["glm", "survival"], "variables": ["age", "smoker", "event", "days",
                                                           "died"],
            "dp_budget_milli_eps": 1000, "privacy_unit": "person", "max_sites_per_person": 2,
            "contribution": {"method": "shapley", "utility": "cd" * 32},
            "revenue_pool": 9000}).ok
        for h in HOSPITALS:
            assert client(f"{h}/root").call(
                "studies", "approve", {"study": "s1", "site": h, "committee_ref": f"DC-{h}"},
                cosigners={f"{h}/dsc": ring.signing[f"{h}/dsc"]}).ok
        rec = LedgerRecorder("s1", caller(dr), {h: caller(client(f"{h}/gw"))
                                                  for h in HOSPITALS})
        fed = Federation(sites, study="s1", secure=True, recorder=rec,
                         privacy_unit="person", unit_sensitivity=2)
        fit = fed.glm("binomial", "event", ["age", "smoker"], epsilon=0.4, bounds=BOUNDS,
                      steps=3)
        assert np.all(np.isfinite(fit.coef)) and fit.iterations == 3
        cox = fed.cox("days", "died", ["age", "smoker"], GRID, epsilon=0.3, bounds=BOUNDS,
                      steps=2)
        assert np.all(np.isfinite(cox.coef)) and cox.iterations == 2
        curve = fed.kaplan_meier("days", "died", GRID, epsilon=0.3)
        assert np.all(np.diff(curve) <= 0)
        asked = [len(s.audit) for s in sites]
        with pytest.raises(ResearchError, match="DP budget"):
            fed.kaplan_meier("days", "died", GRID, epsilon=0.1)
        assert [len(s.audit) for s in sites] == asked == [6] * 3
        # the refused query was never dispatched: it is not in the trail either
        assert len(fed.trail) == 6
        audit.write_bundle(bundle, fed.trail)
    assert _state(ws, "spent/s1/person") == {"milli_eps": 1000}
    assert _state(ws, "dpfit/s1/q1") == {"rounds": 3, "used": 3}
    assert _state(ws, "dpfit/s1/q4") == {"rounds": 2, "used": 2}
    assert [_state(ws, f"query/s1/q{i}")["dp_milli_eps"] for i in range(1, 7)] == [
        400, 0, 0, 300, 0, 300]
    assert _state(ws, "query/s1/q3")["dp_round_of"] == "q1"
    assert (_state(ws, "query/s1/q5")["dp_round_of"], _state(ws, "query/s1/q5")["analysis"]
            ) == ("q4", "survival")
    with ws.node(max_wait=0.001) as node:  # a restarted peer replays the account
        again = Client(node, node.chain_id, "research/dr", ring.signing["research/dr"])
        r = again.call("studies", "query", {
            "study": "s1", "query_id": "late", "query_hash": "00" * 32, "analysis": "glm",
            "variables": ["age"], "sites": HOSPITALS, "dp_milli_eps": 1,
            "privacy_unit": "person", "dp_sensitivity": 2})
        assert not r.ok and "DP budget" in str(r)
        r = again.call("studies", "query", {
            "study": "s1", "query_id": "late2", "query_hash": "00" * 32, "analysis": "glm",
            "variables": ["age", "event", "smoker"], "sites": HOSPITALS, "dp_round_of": "q1"})
        assert not r.ok and "used its 3 rounds" in str(r)
    ok = CliRunner().invoke(app, ["research", "verify", str(bundle), "--study", "s1",
                                  "--dir", str(ws.root)])
    assert ok.exit_code == 0, ok.output
    assert f"{len(fed.trail) * 5} hashes match" in ok.output
