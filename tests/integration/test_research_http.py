"""Four sites as separate HTTP processes: a secure federated GLM over HTTP equals the pooled
statsmodels fit; a disclosure refusal crosses the wire with its rule; a site process killed
before a round is a dropout that the coordinator recovers from; each site's own audit log file
(``--audit-log``) is served at ``GET /audit-log`` and holds every response hash the
coordinator received."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import statsmodels.api as sm

from medledger.research.errors import QueryRefused
from medledger.research.federation import Federation
from medledger.research.http import HttpSite
from medledger.research.sitelog import read_log
from medledger.research.synth import site_tables
from tests.support.sites import MODULE, Started, site_processes

pytestmark = pytest.mark.integration
SITES = [("hosp-a", 300, 1), ("hosp-b", 500, 2), ("hosp-c", 700, 3), ("hosp-d", 900, 4)]


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Started]:
    with site_processes([(name, [*MODULE, "--name", name, "--rows", str(rows), "--seed",
                                 str(seed), "--audit-log", str(tmp_path / f"{name}.log")])
                         for name, rows, seed in SITES]) as out:
        yield out


def test_sites_over_http(processes: list[tuple[subprocess.Popen[bytes], HttpSite]],
                         tmp_path: Path) -> None:
    clients = [c for _, c in processes]
    fed = Federation(clients, secure=True, on_dropout="recover")
    fit = fed.glm("binomial", "event", ["age", "smoker", "bmi"])
    tables = [site_tables([rows], seed=seed)[0] for _, rows, seed in SITES]
    keep = [t["consent_research"] for t in tables]
    col = {k: np.concatenate([t[k][m] for t, m in zip(tables, keep, strict=True)])
           for k in ("age", "smoker", "bmi", "event")}
    X = np.column_stack([np.ones(col["age"].size), col["age"], col["smoker"], col["bmi"]])
    ref = sm.GLM(col["event"], X, family=sm.families.Binomial()).fit(tol=1e-13, maxiter=100)
    assert np.max(np.abs(fit.coef - ref.params)) <= 1e-6
    assert np.max(np.abs(fit.se - ref.bse)) <= 1e-6

    with pytest.raises(QueryRefused) as info:  # 0.1-year bins: cells of 1–2 people
        fed.quantiles("age", list(np.linspace(20, 85, 651)), [0.5])
    assert info.value.refusals == {name: "min_cell" for name, _, _ in SITES}
    assert fed.trail[-1]["outcomes"]["hosp-a"] == "refused:min_cell"
    assert fed.trail[-1]["policies"]["hosp-a"] != "0" * 64

    for _, client in processes:  # each site's own log, fetched over HTTP, is its file
        raw = client.audit_log()
        assert raw == (tmp_path / f"{client.name}.log").read_bytes()
        entries, problems, _ = read_log(raw)
        assert problems == [] and len(entries) == len(fed.trail)
        assert [e["response"] for e in entries if e["outcome"] == "released"] == [
            t["responses"][client.name] for t in fed.trail if client.name in t["responses"]]
    full = fed.moments("bmi")
    processes[3][0].kill()  # hosp-d goes away before the next round
    processes[3][0].wait(timeout=10)
    three = fed.moments("bmi")
    assert fed.trail[-1]["dropped"] == ["hosp-d"]
    d_rows = int(np.sum(tables[3]["consent_research"]))
    assert three.n == full.n - d_rows
    d_bmi = tables[3]["bmi"][tables[3]["consent_research"]]
    assert three.total == pytest.approx(full.total - d_bmi.sum(), rel=1e-12)
    with pytest.raises(httpx.HTTPError):  # the process is really gone
        httpx.get(str(processes[3][1]._http.base_url).rstrip("/") + "/public-key", timeout=1)
