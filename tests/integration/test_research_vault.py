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

from collections.abc import Iterator
from typing import Any

import numpy as np
import orjson
import pytest
import statsmodels.api as sm
from statsmodels.duration.hazard_regression import PHReg

from medledger.research.errors import QueryRefused, ResearchError
from medledger.research.federation import Federation
from medledger.research.http import HttpSite, open_vault_site
from medledger.research.recorder import LedgerRecorder
from medledger.research.vault import VaultTableSource, vault_site
from tests.support.research_vault import (
    STUDY_VARS,
    World,
    assert_fit_is_pooled,
    check_against_pooled,
    km_reference,
    pooled_crosstab,
    reference,
    statsmodels_fit,
    vault_world,
)
from tests.support.sites import CLI, MODULE, site_processes

pytestmark = pytest.mark.integration
HOSPITALS = ["hosp-a", "hosp-b", "hosp-c"]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with vault_world(tmp_path_factory.mktemp("rv"), HOSPITALS) as w:
        yield w


# -- in-process sites ------------------------------------------------------------------------

def test_vault_sites_in_process_agree_with_pooled_consenting_rows(world: World) -> None:
    w = world
    sid = w.study()
    sites = [vault_site(h, w.vaults[h], w.node.store) for h in HOSPITALS]
    fed = Federation(sites, study=sid, secure=True, recorder=w.recorder(sid))

    col = w.pooled(STUDY_VARS)
    check_against_pooled(fed, col, sum(len(reference(v)) for v in w.vaults.values()), km=False)

    fit = fed.glm("gaussian", "glucose", ["age", "diabetes"])
    ref, n = statsmodels_fit(col, "glucose", ["age", "diabetes"], sm.families.Gaussian())
    assert fit.n == n and np.max(np.abs(fit.coef - ref.params)) <= 1e-6

    m = fed.moments("followup_days")
    fd = col["followup_days"][~np.isnan(col["followup_days"])]
    assert m.n == fd.size and m.total == pytest.approx(fd.sum(), rel=1e-12)

    # a consenting patient seen at two hospitals revokes: the next query leaves them out
    both = w.seen_at(2)
    before = fed.crosstab({"sex": ["F", "M"]})
    heights = [s.audit[-1]["consent_height"] for s in sites]
    w.revoke(both)
    after = fed.crosstab({"sex": ["F", "M"]})
    assert before.sum() - after.sum() == 2
    assert after.tolist() == pooled_crosstab(w.pooled(STUDY_VARS)).sum(axis=1).tolist()
    assert all(s.audit[-1]["consent_height"] > h for s, h in zip(sites, heights, strict=True))

    # what a site releases: aggregates only — never how many patients it left out
    for entry in fed.trail:
        for resp in entry["artifacts"]["responses"].values():
            assert set(resp) <= {"site", "analysis", "policy", "n", "values", "layout",
                                 "masked"}


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
    col = w.pooled(names)
    grid, want, events = km_reference(col)  # whole days: every event time is on the grid
    assert 10 <= events < int((~np.isnan(col["days_to_stroke"])).sum())  # and censored rows
    surv = fed.kaplan_meier("days_to_stroke", "stroke", grid)
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


def test_a_vault_site_waits_as_long_as_it_is_told_for_a_lagging_ledger(world: World) -> None:
    """``--ledger-wait``: how long a query recorded beyond this site's ledger head waits."""
    site = open_vault_site("hosp-a", world.root / "vaults" / "hosp-a", str(world.ws.root),
                           ledger_wait=0.25)
    assert isinstance(site.source, VaultTableSource) and site.source.wait == 0.25
    default = open_vault_site("hosp-a", world.root / "vaults" / "hosp-a", str(world.ws.root))
    assert isinstance(default.source, VaultTableSource) and default.source.wait == 5.0


# -- sites as HTTP processes -----------------------------------------------------------------

@pytest.fixture
def http_sites(world: World) -> Iterator[list[HttpSite]]:
    # both front ends take --ledger-wait (a site that does not start fails the fixture)
    with site_processes([(h, [*(MODULE if i else CLI), "--name", h, "--vault",
                              str(world.root / "vaults" / h), "--ledger", str(world.ws.root),
                              *(["--ledger-wait", "2.5"] if i < 2 else [])])
                         for i, h in enumerate(HOSPITALS)]) as started:
        yield [client for _, client in started]


def test_vault_sites_over_http(world: World, http_sites: list[HttpSite]) -> None:
    w = world
    sid = w.study()
    fed = Federation(http_sites, study=sid, secure=True,
                     recorder=w.recorder(sid))
    col = w.pooled(STUDY_VARS)
    fit = fed.glm("poisson", "visits", ["age", "female", "hypertension"])
    assert_fit_is_pooled(fit, col, "visits", ["age", "female", "hypertension"],
                         sm.families.Poisson())

    one = w.seen_at(1)
    before = fed.crosstab({"sex": ["F", "M"], "hypertension": [0.0, 1.0]})
    w.revoke(one)
    after = fed.crosstab({"sex": ["F", "M"], "hypertension": [0.0, 1.0]})
    assert before.sum() - after.sum() == 1
    assert after.tolist() == pooled_crosstab(w.pooled(STUDY_VARS)).tolist()

    with pytest.raises(ResearchError, match="recorded queries only"):
        Federation(http_sites, study=sid,
                   run_prefix="x").moments("age")
    with pytest.raises(ResearchError, match="differs from the query recorded"):  # q1 is a GLM
        Federation(http_sites, study=sid).moments("age")


@pytest.mark.postgres
def test_a_site_given_a_ledger_location_that_holds_none_is_told_so(tmp_path: Any) -> None:
    import uuid

    import psycopg

    from medledger.errors import Code, MedLedgerError
    from medledger.research.vault import open_ledger
    from tests.support.services import PG_DSN, require_port

    with pytest.raises(MedLedgerError) as exc:
        open_ledger(tmp_path / "no-such-store.db")
    assert exc.value.code == Code.NOT_FOUND
    require_port("127.0.0.1", 5432, "PostgreSQL")
    typo = f"peer_typo_{uuid.uuid4().hex[:8]}"
    with pytest.raises(MedLedgerError) as exc:
        open_ledger(f"postgresql://root@127.0.0.1:5432/test?schema={typo}")
    assert exc.value.code == Code.NOT_FOUND and typo in exc.value.message
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        found = conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (typo,)).fetchone()
    assert found is None  # before, the site created the schema and read an empty ledger
