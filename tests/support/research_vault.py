"""Shared by the research tests whose sites read gateway vaults (embedded ledger and cluster).

The independent reference: each vault's records read straight from its SQLite file and mapped
to the study variables by this module's own code (not ``research.variables``), and consent
taken from what the test granted (not from ``consent.model.decide``). ``consent_mix`` grants
consents of every kind in a fixed mix; only the first two kinds admit a patient to research.
"""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import statsmodels.api as sm
from statsmodels.duration.survfunc import SurvfuncRight

from medledger.client.client import Client
from medledger.consortium.bootstrap import Keyring
from medledger.crypto.keys import SigningKey, b64
from medledger.errors import Code
from medledger.gateway import service
from medledger.gateway.deid import PseudonymKey
from medledger.gateway.synth import generate
from medledger.gateway.vault import Vault
from medledger.node.node import Node
from medledger.research.errors import ResearchError
from medledger.research.recorder import LedgerRecorder
from medledger.research.variables import DEFAULT_MAP
from medledger.workspace import DEFAULT_ORGS, Workspace

STUDY_VARS = ["age", "female", "sex", "hypertension", "diabetes", "glucose", "visits",
              "followup_days"]
FORM = hashlib.sha256(b"signed consent form").hexdigest()
DAY = 86_400_000
PSEUDONYM_KEY = PseudonymKey("k1", b"\x05" * 32)
Col = dict[str, np.ndarray[Any, Any]]


def members(hospitals: Sequence[str]) -> list[tuple[str, str]]:
    """The researcher, and each hospital's gateway and data steward."""
    return [("research/dr", "researcher"),
            *[(f"{h}/gateway", "gateway") for h in hospitals],
            *[(f"{h}/steward", "data-steward") for h in hospitals]]


def orgs(hospitals: Sequence[str]) -> list[tuple[str, str, str]]:
    """The workspace's default organisations plus any hospital they lack (``hosp-d``…)."""
    known = {o[0] for o in DEFAULT_ORGS}
    return [*DEFAULT_ORGS, *((h, f"Synthetic hospital {h}", "hospital")
                             for h in hospitals if h not in known)]


def register_args(sid: str, hospitals: Sequence[str], **kw: Any) -> dict[str, Any]:
    """``studies.register`` arguments for a study over ``hospitals`` on the default map."""
    return {"study": sid, "protocol": "ab" * 32, "ethics_ref": "IRB-V", "sites": list(hospitals),
            "analyses": ["crosstab", "glm", "moments"], "variables": STUDY_VARS,
            "contribution": {"method": "count", "utility": "cd" * 32}, "revenue_pool": 0,
            "variable_map": DEFAULT_MAP.digest(), **kw}


KINDS = ("research-org", "researcher-role", "few-categories", "treatment", "other-recipient",
         "expired", "none")
ADMITTING = KINDS[:2]


def consent_mix(patients: Sequence[str], seed: int = 6
                ) -> Iterator[tuple[str, dict[str, Any] | None, str]]:
    """(patient, ``consent.grant`` args or None, kind) for each patient: research for the
    research org, research for any researcher with exactly the study's categories (both in
    ``ADMITTING``); too few categories, another purpose, another recipient, expired (none
    admit); about 15% get no consent at all (args None)."""
    rng = random.Random(seed)
    now = int(time.time() * 1000)
    for i, p in enumerate(patients):
        roll = rng.random()
        args: dict[str, Any] = {"consent_id": f"c{i}", "patient": p, "purpose": "research",
                                "categories": ["all"], "recipient_org": "research",
                                "start": now - DAY, "evidence": FORM}
        kind = KINDS[sum(roll >= b for b in (0.55, 0.65, 0.70, 0.75, 0.80, 0.85))]
        if 0.55 <= roll < 0.65:  # any researcher, exactly the study's categories
            del args["recipient_org"]
            args.update(recipient_role="researcher",
                        categories=["conditions", "demographics", "labs"])
        elif 0.65 <= roll < 0.70:
            args["categories"] = ["labs"]            # too few categories for the study
        elif 0.70 <= roll < 0.75:
            args["purpose"] = "treatment"            # not research
        elif 0.75 <= roll < 0.80:
            args["recipient_org"] = "cdc"            # another recipient
        elif 0.80 <= roll < 0.85:
            args.update(start=now - 10 * DAY, end=now - DAY)  # expired
        yield p, None if kind == "none" else args, kind


# -- the independent reference -------------------------------------------------------------

def reference(vault: Vault) -> dict[str, dict[str, Any]]:
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


def pooled_rows(vaults: Mapping[str, Vault], consenting: set[str], names: Sequence[str],
                sites: Sequence[str] | None = None) -> Col:
    """The consenting patients' rows of every site in ``sites`` (default all), concatenated
    (a patient seen at two hospitals is a row at each: sites are not linked)."""
    rows = [r for h in (sites or list(vaults))
            for p, r in sorted(reference(vaults[h]).items()) if p in consenting]
    return {n: np.array([r[n] for r in rows], dtype=object if n == "sex" else float)
            for n in names}


def statsmodels_fit(col: Col, y: str, x: list[str], family: Any) -> Any:
    ok = np.all([~np.isnan(col[v]) for v in [y, *x]], axis=0)
    X = np.column_stack([np.ones(int(ok.sum())), *(col[v][ok] for v in x)])
    return sm.GLM(col[y][ok], X, family=family).fit(tol=1e-13, maxiter=100), int(ok.sum())


def assert_fit_is_pooled(fit: Any, col: Col, y: str, x: list[str], family: Any) -> None:
    """The federated GLM ``fit`` equals statsmodels' on the pooled rows of ``col`` (to 1e-6)."""
    ref, n = statsmodels_fit(col, y, x, family)
    assert fit.n == n
    assert np.max(np.abs(fit.coef - ref.params)) <= 1e-6
    assert np.max(np.abs(fit.se - ref.bse)) <= 1e-6


def pooled_crosstab(col: Col) -> np.ndarray[Any, Any]:
    t = np.zeros((2, 2), dtype=np.int64)
    for s, hyp in zip(col["sex"], col["hypertension"], strict=True):
        if s in ("F", "M"):
            t[("F", "M").index(s), int(hyp)] += 1
    return t


def km_reference(col: Col) -> tuple[list[float], np.ndarray[Any, Any], int]:
    """(whole-day grid covering every event time, statsmodels S(t) on it, events) for
    ``days_to_stroke`` / ``stroke`` over the rows with a time."""
    ok = ~np.isnan(col["days_to_stroke"])
    t, e = col["days_to_stroke"][ok], col["stroke"][ok]
    grid = list(np.arange(0.0, float(t.max()) + 1.0))
    ref = SurvfuncRight(t, e)
    idx = np.searchsorted(ref.surv_times, grid, side="right") - 1
    return grid, np.where(idx >= 0, ref.surv_prob[np.maximum(idx, 0)], 1.0), int(e.sum())


LEVELS: dict[str, list[object]] = {"sex": ["F", "M"], "hypertension": [0.0, 1.0]}


def check_against_pooled(fed: Any, col: Col, everyone: int, *, km: bool = True
                         ) -> np.ndarray[Any, Any]:
    """The federated count table and binomial GLM (and, with ``km``, Kaplan–Meier of
    ``days_to_stroke``) equal the pooled computation over ``col``, the consenting rows;
    ``everyone`` is the number of patients in the vaults (some must be left out). Returns the
    count table."""
    table: np.ndarray[Any, Any] = np.asarray(fed.crosstab(LEVELS))
    assert table.tolist() == pooled_crosstab(col).tolist()
    assert 100 < table.sum() < everyone  # the patients without a research consent are out

    fit = fed.glm("binomial", "hypertension", ["age", "female", "visits"])
    assert_fit_is_pooled(fit, col, "hypertension", ["age", "female", "visits"],
                         sm.families.Binomial())
    if km:
        grid, want, events = km_reference(col)
        assert events >= 10
        surv = fed.kaplan_meier("days_to_stroke", "stroke", grid)
        assert np.max(np.abs(surv - want)) <= 1e-9
    return table


def seen_at(vaults: Mapping[str, Vault], consenting: set[str], k: int) -> str:
    """A consenting patient with known sex present in exactly ``k`` vaults."""
    refs = [reference(v) for v in vaults.values()]
    for p in sorted(consenting):
        here = [r[p] for r in refs if p in r]
        if len(here) == k and all(x["sex"] is not None for x in here):
            return p
    raise AssertionError(f"no consenting patient in {k} vaults")


# -- a world on the embedded ledger ----------------------------------------------------------

def enroll_study_members(client: Callable[[str], Client], ring: Keyring,
                         hospitals: Sequence[str]) -> None:
    """Enrol ``research/dr`` (researcher) and each hospital's ``dsc`` (data steward) and ``gw``
    (gateway) with fresh keys added to ``ring``, each by its organisation's root."""
    roles = {"research/dr": "researcher", **{f"{h}/dsc": "data-steward" for h in hospitals},
             **{f"{h}/gw": "gateway" for h in hospitals}}
    for member, role in roles.items():
        ring.signing[member] = key = SigningKey.generate()
        assert client(f"{member.split('/')[0]}/root").call("consortium", "enroll", {
            "member": member, "role": role, "public_key": b64(key.public)}).ok


def caller(client: Client) -> Callable[[str, dict[str, Any]], Any]:
    """``call(method, args)`` on the ``studies`` contract; a refusal raises."""
    def call(method: str, args: dict[str, Any]) -> Any:
        r = client.call("studies", method, args)
        if not r.ok:
            raise ResearchError(Code.FORBIDDEN, f"studies.{method}: {r.code} {r.message}")
        return r
    return call


@dataclass
class World:
    root: Path
    ws: Workspace
    node: Node
    hospitals: list[str]
    vaults: dict[str, Vault]
    consenting: set[str] = field(default_factory=set)   # what the test granted and kept
    research_consent: dict[str, str] = field(default_factory=dict)  # patient → consent id
    studies: int = 0

    def client(self, member: str) -> Client:
        return Client(self.node, self.node.chain_id, member, self.ws.keyring().signing[member])

    def caller(self, member: str) -> Any:
        return caller(self.client(member))

    def study(self, sites: Sequence[str] | None = None, **kw: Any) -> str:
        """Register and approve a fresh study over ``sites`` (default: every hospital)."""
        self.studies += 1
        sid = f"vault-{self.studies}"
        sites = list(sites or self.hospitals)
        ring = self.ws.keyring()
        self.caller("research/dr")("register", register_args(sid, sites, **kw))
        for h in sites:
            r = self.client(f"{h}/root").call(
                "studies", "approve", {"study": sid, "site": h, "committee_ref": f"DC-{h}"},
                cosigners={f"{h}/steward": ring.signing[f"{h}/steward"]})
            assert r.ok, r
        return sid

    def recorder(self, study: str, sites: Sequence[str] | None = None) -> LedgerRecorder:
        return LedgerRecorder(study, self.caller("research/dr"),
                              {h: self.caller(f"{h}/gateway") for h in sites or self.hospitals})

    def revoke(self, patient: str) -> None:
        r = self.client("hosp-b/root").call("consent", "revoke", {
            "consent_id": self.research_consent[patient], "reason": "patient withdrew",
            "evidence": FORM})
        assert r.ok, r
        self.consenting.discard(patient)

    def pooled(self, names: Sequence[str], sites: Sequence[str] | None = None) -> Col:
        return pooled_rows(self.vaults, self.consenting, names, sites)

    def seen_at(self, k: int) -> str:
        return seen_at(self.vaults, self.consenting, k)


def grant(w: World, patients: list[str]) -> None:
    """``consent_mix`` granted by hosp-a; checks every kind of consent (and none) occurs."""
    hosp = w.client("hosp-a/root")
    futures, kinds = [], dict.fromkeys(KINDS, 0)
    for p, args, kind in consent_mix(patients):
        kinds[kind] += 1
        if args is None:
            continue
        if kind in ADMITTING:
            w.consenting.add(p)
            w.research_consent[p] = args["consent_id"]
        futures.append(hosp.submitter.submit(hosp.build("consent", "grant", args)))
    for f in futures:
        assert f.result(30).ok
    assert min(kinds.values()) >= 5, kinds  # every kind of consent (and none) really occurs


@contextmanager
def vault_world(root: Path, hospitals: Sequence[str], *, seed: int = 23, persons: int = 300,
                rows: int = 400) -> Iterator[World]:
    """``gateway.synth`` hospitals ingested into one vault each and anchored on one embedded
    ledger; research consents granted (``grant``)."""
    names = generate(root / "syn", seed=seed, persons=persons, rows=rows,
                     hospitals=max(3, len(hospitals)))
    ws = Workspace.init(root / "ws", "research-vault", orgs(hospitals), members(hospitals))
    with ws.node(max_block_txs=200, max_wait=0.002) as node:
        w = World(root, ws, node, list(hospitals),
                  {h: Vault(root / "vaults" / h) for h in hospitals})
        try:
            for h in hospitals:
                files = [root / "syn" / n for n in names if n.startswith(h + "/")]
                with service.ledger(ws.root, h, node=node) as anchorer:
                    service.ingest_export_dir(w.vaults[h], PSEUDONYM_KEY, files, h, anchorer)
            patients = sorted(set().union(*(reference(v) for v in w.vaults.values())))
            grant(w, patients)
            yield w
        finally:
            for v in w.vaults.values():
                v.close()
