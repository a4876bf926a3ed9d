"""The research demo: a study across three hospitals from registration and site approvals to a
released, audited result, the privacy budget left, and the revenue split.

All data are synthetic (``research.synth``) and stay inside each ``Site``; the coordinator sees
masked uploads and their sums (secure aggregation) — except for the contribution round, whose
per-site aggregates the protocol discloses to the coordinator for valuation.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from medledger.client.client import Client
from medledger.demo.ledger import DemoResult
from medledger.errors import Code
from medledger.installed import default_registry
from medledger.ledger.verify import verify_store
from medledger.research import audit, glm
from medledger.research.contribution import Utility, Validation, revenue_split, shapley
from medledger.research.errors import QueryRefused, ResearchError
from medledger.research.federation import Federation
from medledger.research.recorder import LedgerRecorder
from medledger.research.site import Site
from medledger.research.synth import site_tables
from medledger.workspace import Workspace

HOSPITALS = ["hosp-a", "hosp-b", "hosp-c"]
MEMBERS = [("research/dr-li", "researcher"),
           *[(f"{h}/committee", "data-steward") for h in HOSPITALS],
           *[(f"{h}/gw", "gateway") for h in HOSPITALS]]
X = ["age", "smoker", "bmi"]
POOL = 90_000


def _caller(client: Client) -> Any:
    def call(method: str, args: dict[str, Any]) -> Any:
        r = client.call("studies", method, args)
        if not r.ok:
            raise ResearchError(Code.FORBIDDEN, f"studies.{method} refused: {r.code}")
        return r
    return call


def _scenario(ws: Workspace, out: DemoResult, bundle: Path) -> None:
    ring = ws.keyring()
    with ws.node(max_wait=0.002) as node:
        def client(member: str) -> Client:
            return Client(node, node.chain_id, member, ring.signing[member])

        tables = site_tables([600, 1500, 2400], seed=2026)
        sites = [Site(h, t) for h, t in zip(HOSPITALS, tables, strict=True)]
        v = site_tables([3000], seed=99, consent_rate=1.0)[0]  # consortium validation set
        Xv = np.column_stack([np.ones(v["age"].size), *(v[c] for c in X)])
        utility = Utility("binomial", Validation(Xv, v["event"]))
        protocol = {"title": "Smoking, BMI and age as risk factors (synthetic)",
                    "model": {"family": "binomial", "y": "event", "x": X}}
        dr = _caller(client("research/dr-li"))
        dr("register", {
            "study": "smoke-1", "protocol": audit.digest(protocol), "ethics_ref": "IRB-2026-117",
            "sites": HOSPITALS, "analyses": ["glm", "crosstab", "histogram"],
            "variables": ["age", "smoker", "bmi", "event", "sex"], "dp_budget_milli_eps": 1000,
            "contribution": {"method": "blend", "utility": utility.describe(),
                             "shapley_weight_ppm": 500_000},
            "revenue_pool": POOL})
        out.add("study registered", "smoke-1: protocol, ethics IRB-2026-117, 3 sites, "
                "DP budget ε = 1.0, revenue pool 90,000")
        lone = client("hosp-a/root").call("studies", "approve", {
            "study": "smoke-1", "site": "hosp-a", "committee_ref": "DC-A-7"})
        out.add("approval without committee signature", f"refused: {lone.code}")
        for h in HOSPITALS:
            r = client(f"{h}/root").call(
                "studies", "approve", {"study": "smoke-1", "site": h, "committee_ref": f"DC-{h}"},
                cosigners={f"{h}/committee": ring.signing[f"{h}/committee"]})
            assert r.ok, r
        out.add("site approvals", "3 of 3, each co-signed by the data committee → active")

        rec = LedgerRecorder("smoke-1", dr, {h: _caller(client(f"{h}/gw")) for h in HOSPITALS})
        terms = {"min_sites": 3, "min_cell": 3, "glm_max_param_ratio_ppm": 330_000}
        fed = Federation(sites, study="smoke-1", secure=True, recorder=rec, disclosure=terms)
        fit = fed.glm("binomial", "event", X)
        coefs = ", ".join(f"{n} {b:+.4f} (SE {s:.4f})" for n, b, s in
                          zip(["intercept", *X], fit.coef, fit.se, strict=True))
        out.add("federated logistic GLM", f"{coefs}; n = {fit.n}, {fit.iterations} rounds, "
                "secure aggregation")
        try:
            fed.quantiles("age", list(np.linspace(20, 85, 651)), [0.5])
        except QueryRefused as exc:
            out.add("fine-grained histogram", f"refused at the sites: {exc.refusals}")
        for eps in (0.5, 0.5):
            t = fed.crosstab({"sex": ["F", "M"], "smoker": [0.0, 1.0]}, epsilon=eps)
            out.add(f"DP cross-tab sex × smoker (ε = {eps})", t.tolist())
        try:
            fed.crosstab({"sex": ["F", "M"]}, epsilon=0.5)
        except ResearchError as exc:
            out.add("third DP query", f"refused before any site was asked: {exc.message}")
        ref = Federation(sites, study="smoke-1", recorder=rec, run_prefix="ref")
        beta = ref.glm("binomial", "event", X, site_weighted=True).coef
        ref.run("glm", {"family": "binomial", "y": "event", "x": X, "weights": None,
                        "offset": None, "beta": [float(b) for b in beta]})
        answers = ref.trail[-1]["artifacts"]["responses"]
        steps = [glm.GlmStep(np.asarray(a["values"]["info"]).reshape(4, 4),
                             np.asarray(a["values"]["xwz"]), a["values"]["deviance"], a["n"])
                 for a in (answers[h] for h in HOSPITALS)]
        sh = shapley(steps, utility)
        n = np.array([s.n for s in steps], dtype=float)
        shares = 0.5 * np.maximum(sh.values, 0) / np.maximum(sh.values, 0).sum() + 0.5 * n / n.sum()
        pay = revenue_split(POOL, list(shares))
        dr("contribution", {"study": "smoke-1", "method": sh.method, "shares": [
            {"site": h, "n": int(k), "share_ppm": round(s * 1e6), "revenue": p}
            for h, k, s, p in zip(HOSPITALS, n, shares, pay, strict=True)]})
        out.add("contribution (50 % Shapley + 50 % rows)", "; ".join(
            f"{h}: n {int(k)}, φ {f:.4f}, share {s:.3f}, revenue {p:,}"
            for h, k, f, s, p in zip(HOSPITALS, n, sh.values, shares, pay, strict=True)))
        audit.write_bundle(bundle, [*fed.trail[:-1], *ref.trail])
    store = ws.store()
    try:
        spent_now = orjson.loads(store.get_state("studies/spent/smoke-1") or b"{}")["milli_eps"]
        out.add("privacy budget left", f"ε = {(1000 - spent_now) / 1000:.1f} of 1.0")
        checked, problems = audit.verify(store, "smoke-1", bundle)
        out.add("research verify", problems if problems else f"{checked} hashes match")
        out.ok &= not problems
        target = sorted(bundle.glob("q1/response-*.json"))[0]
        raw = bytearray(target.read_bytes())
        raw[len(raw) // 2] ^= 1
        target.write_bytes(bytes(raw))
        _, problems = audit.verify(store, "smoke-1", bundle)
        out.add("after a one-byte change", problems[0] if problems else "NOT DETECTED")
        out.ok &= len(problems) == 1
    finally:
        store.close()


def run(workdir: Path | None = None) -> DemoResult:
    out = DemoResult()
    with tempfile.TemporaryDirectory(prefix="medledger-research-") as tmp:
        root = workdir or Path(tmp)
        ws = Workspace.init(root / "consortium", "demo-research", members=MEMBERS)
        _scenario(ws, out, root / "bundle")
        report = verify_store(ws.store(), default_registry())
        out.add("full verify", f"{'OK' if report.ok else 'FAILED'}: {report.blocks} blocks, "
                f"{report.txs} txs")
        out.ok &= report.ok
    return out
