"""Research sites reading their own gateway vaults (issue 6: "each site runs it on its vault,
only records whose consent covers research").

Three synthetic hospitals (``gateway.synth``) are ingested into three vaults and anchored on an
embedded ledger; research consents are recorded for some patients (and other consents that
must not count: another purpose, another recipient, too few categories, expired). A study runs
a federated count and GLMs through vault-backed sites — in process and as HTTP processes — and
each result is compared with a pooled computation over exactly the consenting patients'
records, computed here independently: the records are read straight from the vaults, the
variables computed by this file's own code, and consent taken from what this test granted (not
from ``consent.model.decide``). A patient who revokes is absent from the next query.
"""

from __future__ import annotations

import hashlib
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
import statsmodels.api as sm
from statsmodels.duration.hazard_regression import PHReg
from statsmodels.duration.survfunc import SurvfuncRight

from medledger.client.client import Client
from medledger.errors import Code
from medledger.gateway import service
from medledger.gateway.deid import PseudonymKey
from medledger.gateway.synth import generate
from medledger.gateway.vault import Vault
from medledger.node.node import Node
from medledger.research.errors import QueryRefused, ResearchError
from medledger.research.federation import Federation
from medledger.research.http import HttpSite
from medledger.research.recorder import LedgerRecorder
from medledger.research.variables import DEFAULT_MAP
from medledger.research.vault import vault_site
from medledger.workspace import Workspace
from tests.support.services import free_port
from tests.support.sites import wait_for_sites

pytestmark = pytest.mark.integration
HOSPITALS = ["hosp-a", "hosp-b", "hosp-c"]
MEMBERS = [("research/dr", "researcher"),
           *[(f"{h}/gateway", "gateway") for h in HOSPITALS],
           *[(f"{h}/steward", "data-steward") for h in HOSPITALS]]
STUDY_VARS = ["age", "female", "sex", "hypertension", "diabetes", "glucose", "visits",
              "followup_days"]
FORM = hashlib.sha256(b"signed consent form").hexdigest()
DAY = 86_400_000


@dataclass
class World:
    root: Path
    ws: Workspace
    node: Node
    vaults: dict[str, Vault]
    consenting: set[str] = field(default_factory=set)   # what this test granted and kept
    research_consent: dict[str, str] = field(default_factory=dict)  # patient → consent id
    studies: int = 0

    def client(self, member: str) -> Client:
        return Client(self.node, self.node.chain_id, member, self.ws.keyring().signing[member])

    def caller(self, member: str) -> Any:
        c = self.client(member)

        def call(method: str, args: dict[str, Any]) -> Any:
            r = c.call("studies", method, args)
            if not r.ok:
                raise ResearchError(Code.FORBIDDEN, f"studies.{method}: {r.code} {r.message}")
            return r
        return call

    def study(self, **kw: Any) -> str:
        """Register and approve a fresh study over the three hospitals."""
        self.studies += 1
        sid = f"vault-{self.studies}"
        ring = self.ws.keyring()
        self.caller("research/dr")("register", {
            "study": sid, "protocol": "ab" * 32, "ethics_ref": "IRB-V", "sites": HOSPITALS,
            "analyses": ["crosstab", "glm", "moments"], "variables": STUDY_VARS,
            "contribution": {"method": "count", "utility": "cd" * 32}, "revenue_pool": 0,
            "variable_map": DEFAULT_MAP.digest(), **kw})
        for h in HOSPITALS:
            r = self.client(f"{h}/root").call(
                "studies", "approve", {"study": sid, "site": h, "committee_ref": f"DC-{h}"},
                cosigners={f"{h}/steward": ring.signing[f"{h}/steward"]})
            assert r.ok, r
        return sid

    def recorder(self, study: str) -> LedgerRecorder:
        return LedgerRecorder(study, self.caller("research/dr"),
                              {h: self.caller(f"{h}/gateway") for h in HOSPITALS})

    def revoke(self, patient: str) -> None:
        r = self.client("hosp-b/root").call("consent", "revoke", {
            "consent_id": self.research_consent[patient], "reason": "patient withdrew",
            "evidence": FORM})
        assert r.ok, r
        self.consenting.discard(patient)


def _grant_all(w: World, patients: list[str]) -> None:
    """Consents of every kind, in a fixed mix; only the first two kinds admit a patient."""
    rng = random.Random(6)
    now = int(time.time() * 1000)
    hosp = w.client("hosp-a/root")
    futures, kinds = [], [0] * 8
    for i, p in enumerate(patients):
        roll = rng.random()
        kinds[sum(roll >= b for b in (0.55, 0.65, 0.70, 0.75, 0.80, 0.85, 1.0))] += 1
        args: dict[str, Any] = {"consent_id": f"c{i}", "patient": p, "purpose": "research",
                                "categories": ["all"], "recipient_org": "research",
                                "start": now - DAY, "evidence": FORM}
        if roll < 0.55:
            w.consenting.add(p)
        elif roll < 0.65:  # any researcher, exactly the study's categories
            del args["recipient_org"]
            args.update(recipient_role="researcher",
                        categories=["conditions", "demographics", "labs"])
            w.consenting.add(p)
        elif roll < 0.70:
            args["categories"] = ["labs"]            # too few categories for the study
        elif roll < 0.75:
            args["purpose"] = "treatment"            # not research
        elif roll < 0.80:
            args["recipient_org"] = "cdc"            # another recipient
        elif roll < 0.85:
            args.update(start=now - 10 * DAY, end=now - DAY)  # expired
        else:
            continue                                 # no consent at all
        if p in w.consenting:
            w.research_consent[p] = f"c{i}"
        futures.append(hosp.submitter.submit(hosp.build("consent", "grant", args)))
    for f in futures:
        assert f.result(30).ok
    assert min(kinds[:7]) >= 5, kinds  # every kind of consent (and none) really occurs


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("rv")
    names = generate(root / "syn", seed=23)
    key = PseudonymKey("k1", b"\x05" * 32)
    ws = Workspace.init(root / "ws", "research-vault", members=MEMBERS)
    with ws.node(max_block_txs=200, max_wait=0.002) as node:
        w = World(root, ws, node, {h: Vault(root / "vaults" / h) for h in HOSPITALS})
        for h in HOSPITALS:
            files = [root / "syn" / n for n in names if n.startswith(h)]
            with service.ledger(ws.root, h, node=node) as anchorer:
                service.ingest_export_dir(w.vaults[h], key, files, h, anchorer)
        patients = sorted(set().union(*(_reference(v) for v in w.vaults.values())))
        _grant_all(w, patients)
        yield w
        for v in w.vaults.values():
            v.close()


# -- the independent reference -------------------------------------------------------------

def _reference(vault: Vault) -> dict[str, dict[str, Any]]:
    """Per patient, the study variables, computed straight from the vault's records."""
    assert vault.rows("SELECT count(*) FROM records WHERE version > 1")[0][0] == 0
    assert {r[0] for r in vault.rows("SELECT status FROM batches")} == {"anchored"}
    out: dict[str, dict[str, Any]] = {}
    for r in vault.rows("SELECT record_id, version, resource_type, subject, body FROM records"):
        res = orjson.loads(vault.record_body(r[0], r[1], r[4]))["resource"]
        p = out.setdefault(r[3], {"year": None, "gender": None, "codes": [], "glucose": [],
                                  "days": set(), "stroke_days": []})
        if r[2] == "Patient":
            p["year"] = int(res["birthDate"]) if "birthDate" in res else None
            p["gender"] = res["gender"]
        elif r[2] == "Condition":
            p["codes"] += [c["code"] for c in res["code"]["coding"]
                           if c["system"] == "http://hl7.org/fhir/sid/icd-10"]
            p["days"].add(date.fromisoformat(res["recordedDate"]))
            if any(c["system"] == "http://hl7.org/fhir/sid/icd-10" and c["code"].startswith("I63")
                   for c in res["code"]["coding"]):
                p["stroke_days"].append(date.fromisoformat(res["recordedDate"]))
        elif r[2] == "Observation":
            if res["code"]["coding"][0]["code"] == "14749-6":
                p["glucose"].append(res["valueQuantity"]["value"])
            p["days"].add(date.fromisoformat(res["effectiveDateTime"]))
    rows = {}
    for pid, p in out.items():
        days = sorted(p["days"])
        first_stroke = min(p["stroke_days"], default=None)
        start = min([*days[:1], *p["stroke_days"]], default=None)
        rows[pid] = {
            "age": np.nan if p["year"] is None else 2024.0 - p["year"],
            "female": {"female": 1.0, "male": 0.0}.get(p["gender"], np.nan),
            "sex": {"female": "F", "male": "M"}.get(p["gender"]),
            "hypertension": float(any(c.startswith("I10") for c in p["codes"])),
            "diabetes": float(any(c.startswith("E11") for c in p["codes"])),
            "glucose": float(np.mean(p["glucose"])) if p["glucose"] else np.nan,
            "visits": float(len(days)),
            "followup_days": float((days[-1] - days[0]).days) if days else np.nan,
            "stroke": float(first_stroke is not None),
            "days_to_stroke": np.nan if start is None else float(
                ((first_stroke or days[-1]) - start).days)}
    return rows


def pooled(w: World, names: list[str]) -> dict[str, np.ndarray[Any, Any]]:
    """The consenting patients' rows of every site, concatenated (a patient seen at two
    hospitals is a row at each: sites are not linked)."""
    rows = [r for h in HOSPITALS for p, r in sorted(_reference(w.vaults[h]).items())
            if p in w.consenting]
    return {n: np.array([r[n] for r in rows], dtype=object if n == "sex" else float)
            for n in names}


def statsmodels_fit(col: dict[str, np.ndarray[Any, Any]], y: str, x: list[str],
                    family: Any) -> Any:
    ok = np.all([~np.isnan(col[v]) for v in [y, *x]], axis=0)
    X = np.column_stack([np.ones(int(ok.sum())), *(col[v][ok] for v in x)])
    return sm.GLM(col[y][ok], X, family=family).fit(tol=1e-13, maxiter=100), int(ok.sum())


def pooled_crosstab(col: dict[str, np.ndarray[Any, Any]]) -> np.ndarray[Any, Any]:
    t = np.zeros((2, 2), dtype=np.int64)
    for s, hyp in zip(col["sex"], col["hypertension"], strict=True):
        if s in ("F", "M"):
            t[("F", "M").index(s), int(hyp)] += 1
    return t


# -- in-process sites ------------------------------------------------------------------------

def test_vault_sites_in_process_agree_with_pooled_consenting_rows(world: World) -> None:
    w = world
    sid = w.study()
    sites = [vault_site(h, w.vaults[h], w.node.store) for h in HOSPITALS]
    fed = Federation(sites, study=sid, secure=True, recorder=w.recorder(sid))

    col = pooled(w, STUDY_VARS)
    table = fed.crosstab({"sex": ["F", "M"], "hypertension": [0.0, 1.0]})
    assert table.tolist() == pooled_crosstab(col).tolist()
    assert 100 < table.sum() < sum(len(_reference(v)) for v in w.vaults.values())

    fit = fed.glm("binomial", "hypertension", ["age", "female", "visits"])
    ref, n = statsmodels_fit(col, "hypertension", ["age", "female", "visits"],
                             sm.families.Binomial())
    assert fit.n == n
    assert np.max(np.abs(fit.coef - ref.params)) <= 1e-6
    assert np.max(np.abs(fit.se - ref.bse)) <= 1e-6

    fit = fed.glm("gaussian", "glucose", ["age", "diabetes"])
    ref, n = statsmodels_fit(col, "glucose", ["age", "diabetes"], sm.families.Gaussian())
    assert fit.n == n and np.max(np.abs(fit.coef - ref.params)) <= 1e-6

    m = fed.moments("followup_days")
    fd = col["followup_days"][~np.isnan(col["followup_days"])]
    assert m.n == fd.size and m.total == pytest.approx(fd.sum(), rel=1e-12)

    # a consenting patient seen at two hospitals revokes: the next query leaves them out
    both = _seen_at(w, 2)
    before = fed.crosstab({"sex": ["F", "M"]})
    heights = [s.audit[-1]["consent_height"] for s in sites]
    w.revoke(both)
    after = fed.crosstab({"sex": ["F", "M"]})
    assert before.sum() - after.sum() == 2
    assert after.tolist() == pooled_crosstab(pooled(w, STUDY_VARS)).sum(axis=1).tolist()
    assert all(s.audit[-1]["consent_height"] > h for s, h in zip(sites, heights, strict=True))

    # what a site releases: aggregates only — never how many patients it left out
    for entry in fed.trail:
        for resp in entry["artifacts"]["responses"].values():
            assert set(resp) <= {"site", "analysis", "policy", "n", "values", "layout",
                                 "masked"}


def _seen_at(w: World, k: int) -> str:
    """A consenting patient with known sex present in exactly ``k`` vaults."""
    refs = [_reference(w.vaults[h]) for h in HOSPITALS]
    for p in sorted(w.consenting):
        here = [r[p] for r in refs if p in r]
        if len(here) == k and all(x["sex"] is not None for x in here):
            return p
    raise AssertionError(f"no consenting patient in {k} vaults")


def test_vault_sites_refuse_what_the_study_does_not_allow(world: World) -> None:
    w = world
    sid = w.study()
    sites = [vault_site(h, w.vaults[h], w.node.store) for h in HOSPITALS]
    # not recorded on the ledger: refused before any data is read
    with pytest.raises(ResearchError, match="recorded queries only"):
        Federation(sites, study=sid).crosstab({"sex": ["F", "M"]})

    class Lying(LedgerRecorder):  # records allowed variables, sends another one
        def query(self, query_id: str, query: dict[str, Any], query_hash: str) -> None:
            self.researcher("query", {
                "study": self.study, "query_id": query_id, "query_hash": query_hash,
                "analysis": query["analysis"], "sites": list(query["sites"]),
                "variables": ["age"]})

    liar = Lying(sid, w.caller("research/dr"), {h: w.caller(f"{h}/gateway") for h in HOSPITALS})
    with pytest.raises(QueryRefused) as info:
        Federation(sites, study=sid, recorder=liar).moments("creatinine")
    assert info.value.refusals == {h: "column" for h in HOSPITALS}

    # a study fixing another variable map is refused by every vault site
    other = w.study(variable_map="ee" * 32)
    with pytest.raises(ResearchError, match="variable map"):
        Federation(sites, study=other, recorder=w.recorder(other)).moments("age")


def test_vault_sites_run_kaplan_meier_and_cox_recorded_as_survival(world: World) -> None:
    """Survival analyses on the vaults, recorded on the ledger (the contract's ``survival``),
    equal statsmodels on the consenting patients' rows computed by this file's own code."""
    w = world
    names = ["days_to_stroke", "stroke", "age", "female"]
    sid = w.study(analyses=["survival"], variables=names)
    sites = [vault_site(h, w.vaults[h], w.node.store) for h in HOSPITALS]
    fed = Federation(sites, study=sid, secure=True, recorder=w.recorder(sid))
    col = pooled(w, names)
    ok = ~np.isnan(col["days_to_stroke"])
    t, e = col["days_to_stroke"][ok], col["stroke"][ok]
    assert 10 <= int(e.sum()) < e.size  # events and censored rows both occur
    grid = list(np.arange(0.0, float(t.max()) + 1.0))  # whole days: every event time is on it
    surv = fed.kaplan_meier("days_to_stroke", "stroke", grid)
    ref = SurvfuncRight(t, e)
    idx = np.searchsorted(ref.surv_times, grid, side="right") - 1
    want = np.where(idx >= 0, ref.surv_prob[np.maximum(idx, 0)], 1.0)
    assert np.max(np.abs(surv - want)) <= 1e-9

    fit = fed.cox("days_to_stroke", "stroke", ["age", "female"], grid)
    cc = np.all([~np.isnan(col[v]) for v in names], axis=0)
    X = np.column_stack([col["age"][cc], col["female"][cc]])
    cref = PHReg(col["days_to_stroke"][cc], X, status=col["stroke"][cc], ties="breslow").fit()
    assert fit.converged
    assert np.max(np.abs(fit.coef - cref.params)) <= 1e-6
    assert np.max(np.abs(fit.se - cref.bse)) <= 1e-6
    store = w.node.store
    for entry in fed.trail:
        raw = store.get_state(f"studies/query/{sid}/{entry['query_id']}")
        assert raw is not None and orjson.loads(raw)["analysis"] == "survival"


# -- sites as HTTP processes -----------------------------------------------------------------

@pytest.fixture
def http_sites(world: World) -> Iterator[list[HttpSite]]:
    procs, clients = [], []
    try:
        for i, h in enumerate(HOSPITALS):
            port = free_port()
            args = ["--name", h, "--vault", str(world.root / "vaults" / h), "--ledger",
                    str(world.ws.root), "--port", str(port)]
            cmd = ([sys.executable, "-m", "medledger.research.http", *args] if i else
                   [sys.executable, "-m", "medledger.cli.main", "research", "site", *args])
            procs.append(subprocess.Popen(cmd))
            clients.append(HttpSite(h, f"http://127.0.0.1:{port}"))
        wait_for_sites(list(zip(procs, clients, strict=True)))
        yield clients
    finally:
        for c in clients:
            c.close()
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=10)


def test_vault_sites_over_http(world: World, http_sites: list[HttpSite]) -> None:
    w = world
    sid = w.study()
    fed = Federation(http_sites, study=sid, secure=True,
                     recorder=w.recorder(sid))
    col = pooled(w, STUDY_VARS)
    fit = fed.glm("poisson", "visits", ["age", "female", "hypertension"])
    ref, n = statsmodels_fit(col, "visits", ["age", "female", "hypertension"],
                             sm.families.Poisson())
    assert fit.n == n
    assert np.max(np.abs(fit.coef - ref.params)) <= 1e-6
    assert np.max(np.abs(fit.se - ref.bse)) <= 1e-6

    one = _seen_at(w, 1)
    before = fed.crosstab({"sex": ["F", "M"], "hypertension": [0.0, 1.0]})
    w.revoke(one)
    after = fed.crosstab({"sex": ["F", "M"], "hypertension": [0.0, 1.0]})
    assert before.sum() - after.sum() == 1
    assert after.tolist() == pooled_crosstab(pooled(w, STUDY_VARS)).tolist()

    with pytest.raises(ResearchError, match="recorded queries only"):
        Federation(http_sites, study=sid,
                   run_prefix="x").moments("age")
    with pytest.raises(ResearchError, match="differs from the query recorded"):  # q1 is a GLM
        Federation(http_sites, study=sid).moments("age")
