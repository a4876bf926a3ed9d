"""The research demo: a study across three hospitals from registration and site approvals to a
released, audited result, the privacy budget left, and the revenue split.

Each hospital's site reads its own gateway vault: the three synthetic hospitals' exports
(``gateway.synth``) are ingested and anchored, the hospitals record their patients' consents
on the ledger, and the sites answer from the patients whose consent covers research for the
research centre at each query's height (``research.vault``). Data stay inside each site; the
coordinator sees masked uploads and their sums (secure aggregation) — except for the
contribution round, whose per-site aggregates the protocol discloses to the coordinator for
valuation. The validation set of the contribution utility is a separate synthetic cohort the
consortium holds.
"""

from __future__ import annotations

import hashlib
import random
import secrets
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from medledger.client.client import Client
from medledger.demo.ledger import DemoResult
from medledger.errors import Code
from medledger.gateway import service
from medledger.gateway.deid import PseudonymKey
from medledger.gateway.synth import generate
from medledger.gateway.vault import Vault
from medledger.installed import default_registry
from medledger.ledger.verify import verify_store
from medledger.research import audit, glm
from medledger.research.apportion import PHI_SCALE, recheck
from medledger.research.contribution import (
    Utility,
    Validation,
    contribution_args,
    leave_one_out,
    shapley,
)
from medledger.research.errors import QueryRefused, ResearchError
from medledger.research.federation import Federation
from medledger.research.recorder import LedgerRecorder
from medledger.research.variables import DEFAULT_MAP, extract
from medledger.research.vault import vault_site
from medledger.workspace import Workspace

HOSPITALS = ["hosp-a", "hosp-b", "hosp-c"]
MEMBERS = [("research/dr-li", "researcher"),
           *[(f"{h}/committee", "data-steward") for h in HOSPITALS],
           *[(f"{h}/gw", "gateway") for h in HOSPITALS]]
Y, X = "hypertension", ["age", "female", "visits"]
VARIABLES = ["age", "female", "sex", "hypertension", "visits", "days_to_stroke", "stroke"]
KM_GRID = [91.25 * q for q in range(13)]  # quarters over the ~3 years of follow-up (coarse:
# the noise in the numbers at risk adds up over the intervals after t)
POOL = 90_000
RULE = {"method": "blend", "shapley_weight_ppm": 500_000}
FORM = hashlib.sha256(b"signed research consent form (demo)").hexdigest()


def _caller(client: Client) -> Any:
    def call(method: str, args: dict[str, Any]) -> Any:
        r = client.call("studies", method, args)
        if not r.ok:
            raise ResearchError(Code.FORBIDDEN, f"studies.{method} refused: {r.code}")
        return r
    return call


def _vaults(ws: Workspace, node: Any, root: Path, out: DemoResult) -> dict[str, Vault]:
    """Each hospital's gateway ingests its synthetic exports into its own vault (anchored)."""
    names = generate(root / "exports", seed=2026)
    key = PseudonymKey("k1", secrets.token_bytes(32))
    vaults = {}
    for h in HOSPITALS:
        vaults[h] = Vault(root / "vaults" / h)
        files = [root / "exports" / n for n in names if n.startswith(h)]
        with service.ledger(ws.root, h, f"{h}/gw", node=node) as anchorer:
            service.ingest_export_dir(vaults[h], key, files, h, anchorer)
    counts = {h: v.rows("SELECT count(*), count(DISTINCT subject) FROM records")[0]
              for h, v in vaults.items()}
    out.add("gateway vaults", "; ".join(f"{h}: {c[0]} FHIR records of {c[1]} patients"
                                        for h, c in counts.items()) + ", anchored")
    return vaults


def _consents(client: Any, vaults: dict[str, Vault], out: DemoResult) -> dict[str, str]:
    """Each hospital records its patients' consents (signed forms); returns the research
    consents by patient."""
    holder: dict[str, str] = {}
    for h, v in vaults.items():
        # patients in order of first appearance in the hospital's (seeded, byte-identical)
        # exports, not by pseudonym: the pseudonym key is new on every run, and ordering by it
        # gave different patients the same rolls each run, so a site's smallest cross-tab cell
        # sometimes fell under min_cell and the demo's query was refused
        for (p,) in v.rows("SELECT subject FROM records WHERE subject IS NOT NULL GROUP BY "
                           "subject ORDER BY min(file_hash || printf(':%09d', "
                           "CAST(position AS INTEGER)))"):
            holder.setdefault(p, h)
    rng, now = random.Random(2026), int(time.time() * 1000)
    research, futures = {}, []
    for i, (p, h) in enumerate(holder.items()):
        roll = rng.random()
        if roll >= 0.85:
            continue
        purpose = "research" if roll < 0.7 else "treatment"
        cid = f"demo-{i}"
        if purpose == "research":
            research[p] = cid
        c = client(f"{h}/root")
        futures.append(c.submitter.submit(c.build("consent", "grant", {
            "consent_id": cid, "patient": p, "purpose": purpose, "categories": ["all"],
            "recipient_org": "research", "start": now - 86_400_000, "evidence": FORM})))
    assert all(f.result(30).ok for f in futures)
    out.add("consents on the ledger", f"{len(research)} of {len(holder)} patients consent to "
            f"research by the research centre; {len(futures) - len(research)} to treatment "
            "only; the rest gave none")
    return research


def _validation(root: Path) -> Validation:
    """The consortium's own synthetic reference cohort, mapped with the same variable map."""
    names = generate(root / "reference", seed=99, persons=200, rows=300)
    with Vault(root / "reference-vault") as v:
        service.ingest_export_dir(v, PseudonymKey("k9", secrets.token_bytes(32)),
                                  [root / "reference" / n for n in names
                                   if n.startswith("hosp-a")], "hosp-a")
        ext = extract(DEFAULT_MAP, _all_records(v), [Y, *X])
    ok = np.all([~np.isnan(ext.columns[c]) for c in (Y, *X)], axis=0)
    Xv = np.column_stack([np.ones(int(ok.sum())), *(ext.columns[c][ok] for c in X)])
    return Validation(Xv, ext.columns[Y][ok])


def _all_records(v: Vault) -> list[tuple[str, str, dict[str, Any]]]:
    """Every record of the reference vault (not anchored: it never meets the ledger)."""
    return [(r[3], r[2], orjson.loads(v.record_body(r[0], r[1], r[4]))["resource"])
            for r in v.rows("SELECT record_id, version, resource_type, subject, body "
                            "FROM records")]


def _scenario(ws: Workspace, out: DemoResult, root: Path) -> None:
    ring = ws.keyring()
    bundle = root / "bundle"
    with ws.node(max_block_txs=500, max_wait=0.002) as node:
        def client(member: str) -> Client:
            return Client(node, node.chain_id, member, ring.signing[member])

        vaults = _vaults(ws, node, root, out)
        research = _consents(client, vaults, out)
        sites = [vault_site(h, vaults[h], node.store) for h in HOSPITALS]
        utility = Utility("binomial", _validation(root))
        protocol = {"title": "Age, sex and visits and hypertension (synthetic)",
                    "model": {"family": "binomial", "y": Y, "x": X}}
        dr = _caller(client("research/dr-li"))
        dr("register", {
            "study": "htn-1", "protocol": audit.digest(protocol), "ethics_ref": "IRB-2026-117",
            "sites": HOSPITALS, "analyses": ["glm", "crosstab", "histogram", "survival"],
            "variables": VARIABLES, "variable_map": DEFAULT_MAP.digest(),
            "dp_budget_milli_eps": 1000,
            "contribution": RULE | {"utility": utility.describe()},
            "revenue_pool": POOL})
        out.add("study registered", "htn-1: protocol, ethics IRB-2026-117, 3 sites, variables "
                f"{', '.join(VARIABLES)} (variable map {DEFAULT_MAP.digest()[:12]}…), DP "
                "budget ε = 1.0, revenue pool 90,000")
        lone = client("hosp-a/root").call("studies", "approve", {
            "study": "htn-1", "site": "hosp-a", "committee_ref": "DC-A-7"})
        out.add("approval without committee signature", f"refused: {lone.code}")
        for h in HOSPITALS:
            r = client(f"{h}/root").call(
                "studies", "approve", {"study": "htn-1", "site": h, "committee_ref": f"DC-{h}"},
                cosigners={f"{h}/committee": ring.signing[f"{h}/committee"]})
            assert r.ok, r
        out.add("site approvals", "3 of 3, each co-signed by the data committee → active")
        try:
            Federation(sites, study="htn-1", run_prefix="adhoc").crosstab({"sex": ["F", "M"]})
        except ResearchError as exc:
            out.add("query not on the ledger", f"refused by the sites: {exc.message}")

        rec = LedgerRecorder("htn-1", dr, {h: _caller(client(f"{h}/gw")) for h in HOSPITALS})
        terms = {"min_sites": 3, "min_cell": 3, "glm_max_param_ratio_ppm": 330_000}
        fed = Federation(sites, study="htn-1", secure=True, recorder=rec, disclosure=terms)
        fit = fed.glm("binomial", Y, X)
        coefs = ", ".join(f"{n} {b:+.4f} (SE {s:.4f})" for n, b, s in
                          zip(["intercept", *X], fit.coef, fit.se, strict=True))
        out.add("federated logistic GLM", f"{Y} ~ {' + '.join(X)}: {coefs}; n = {fit.n} "
                f"consenting patients' rows, {fit.iterations} rounds, secure aggregation")
        try:
            fed.quantiles("age", list(np.linspace(20, 90, 701)), [0.5])
        except QueryRefused as exc:
            out.add("fine-grained histogram", f"refused at the sites: {exc.refusals}")
        before = int(fed.crosstab({"sex": ["F", "M"]}).sum())
        who = list(research)[len(research) // 2]  # the same patient on every run
        at = sum(1 for v in vaults.values()
                 if v.rows("SELECT 1 FROM records WHERE subject = ? LIMIT 1", (who,)))
        r = client(f"{HOSPITALS[0]}/root").call("consent", "revoke", {
            "consent_id": research[who], "reason": "patient withdrew", "evidence": FORM})
        assert r.ok, r
        after = int(fed.crosstab({"sex": ["F", "M"]}).sum())
        out.add("consent revoked", f"a patient seen at {at} hospital(s) withdrew at height "
                f"{r.height}: rows in the next count {before} → {after}")
        out.ok &= before - after == at
        t = fed.crosstab({"sex": ["F", "M"], Y: [0.0, 1.0]}, epsilon=0.5)
        out.add(f"DP cross-tab sex × {Y} (ε = 0.5)", t.tolist())
        curve = fed.kaplan_meier("days_to_stroke", "stroke", KM_GRID, epsilon=0.5)
        years = {y: float(curve[4 * y]) for y in (1, 2)}
        out.add("DP Kaplan–Meier, stroke-free (ε = 0.5)", ", ".join(
            f"{y} y {v:.3f}" for y, v in years.items()) + " (noisy events and censorings per "
            "quarter; at-risk derived)")
        out.ok &= bool(np.all(np.diff(curve) <= 0))
        try:
            fed.crosstab({"sex": ["F", "M"]}, epsilon=0.5)
        except ResearchError as exc:
            out.add("third DP query", f"refused before any site was asked: {exc.message}")
        ref = Federation(sites, study="htn-1", recorder=rec, run_prefix="ref")
        beta = ref.glm("binomial", Y, X, site_weighted=True).coef
        ref.run("glm", {"family": "binomial", "y": Y, "x": X, "weights": None,
                        "offset": None, "beta": [float(b) for b in beta]})
        answers = ref.trail[-1]["artifacts"]["responses"]
        p = len(X) + 1
        steps = [glm.GlmStep(np.asarray(a["values"]["info"]).reshape(p, p),
                             np.asarray(a["values"]["xwz"]), a["values"]["deviance"], a["n"])
                 for a in (answers[h] for h in HOSPITALS)]
        sh, loo = shapley(steps, utility), leave_one_out(steps, utility)
        args = contribution_args("htn-1", RULE | {"utility": utility.describe()}, POOL,
                                 HOSPITALS, [s.n for s in steps], sh, list(loo))
        off = dict(args, shares=[dict(x) for x in args["shares"]])
        off["shares"][0]["revenue"] += 1000
        off["shares"][1]["revenue"] -= 1000
        r = client("research/dr-li").call("studies", "contribution", off)
        out.add("a split off the rule", f"refused: {r.code} ({r.message.split(';')[0]})")
        out.ok &= r.code == "conflict"
        dr("contribution", args)
        out.add("contribution (50 % Shapley + 50 % rows)", "; ".join(
            f"{x['site']}: n {x['n']}, φ {x['phi_micro'] / PHI_SCALE:.4f}, leave-one-out "
            f"{x['loo_micro'] / PHI_SCALE:.4f}, share {x['share_ppm'] / 1e6:.3f}, revenue "
            f"{x['revenue']:,}" for x in args["shares"]))
        audit.write_bundle(bundle, [*fed.trail, *ref.trail])
        for v in vaults.values():
            v.close()
    store = ws.store()
    try:
        spent_now = orjson.loads(store.get_state("studies/spent/htn-1") or b"{}")["milli_eps"]
        out.add("privacy budget left", f"ε = {(1000 - spent_now) / 1000:.1f} of 1.0")
        checked, problems = audit.verify(store, "htn-1", bundle)
        out.add("research verify", problems if problems else f"{checked} hashes match")
        out.ok &= not problems
        split_off = recheck(orjson.loads(store.get_state("studies/study/htn-1") or b"{}"),
                            orjson.loads(store.get_state("studies/contribution/htn-1") or b"{}"))
        out.add("revenue split recheck", split_off if split_off else "follows the declared rule "
                "(recomputed from n and φ on the ledger)")
        out.ok &= not split_off
        target = sorted(bundle.glob("q1/response-*.json"))[0]
        raw = bytearray(target.read_bytes())
        raw[len(raw) // 2] ^= 1
        target.write_bytes(bytes(raw))
        _, problems = audit.verify(store, "htn-1", bundle)
        out.add("after a one-byte change", problems[0] if problems else "NOT DETECTED")
        out.ok &= len(problems) == 1
    finally:
        store.close()


def run(workdir: Path | None = None) -> DemoResult:
    out = DemoResult()
    with tempfile.TemporaryDirectory(prefix="medledger-research-") as tmp:
        root = workdir or Path(tmp)
        ws = Workspace.init(root / "consortium", "demo-research", members=MEMBERS)
        _scenario(ws, out, root)
        report = verify_store(ws.store(), default_registry())
        out.add("full verify", f"{'OK' if report.ok else 'FAILED'}: {report.blocks} blocks, "
                f"{report.txs} txs")
        out.ok &= report.ok
    return out
