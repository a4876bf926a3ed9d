"""Issue 6, "Real parts": at least four sites as separate processes over HTTP, each reading its
own gateway vault, on one embedded ledger workspace.

Four synthetic hospitals (``gateway.synth.generate(hospitals=4)``: ``hosp-d`` writes in
``hosp-a``'s dialect but sees its own, separately seeded share of the persons, so the first
three hospitals' files are those every other test pins) are ingested into four vaults and
anchored; research consents are granted for some patients and other consents (other purpose,
recipient, categories; expired; none) for others. Each site runs as its own ``medledger
research site`` / ``python -m medledger.research.http`` process on its own vault and audit log.
A study over the four sites is registered and approved; a secure federated count, a binomial
GLM and a Kaplan–Meier curve over HTTP are compared with statsmodels on exactly the consenting
patients' rows, computed by ``tests.support.research_vault`` straight from the vaults. Then a
site process is killed in the middle of a GLM: with ``on_dropout="recover"`` the fit finishes
on the three survivors and equals their pooled fit; with ``"abort"`` the round is aborted and
nothing is released.

Why a fourth hospital from ``synth`` rather than a second synth run ingested as ``hosp-d``: the
profiles name their site (it is part of every record id and source name), so a copy would need
its profiles rewritten, and a separate run would share no persons with the other hospitals;
``hospitals=4`` gives a hospital that names itself and shares persons like the others.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import orjson
import pytest
import statsmodels.api as sm

from medledger.research.errors import ResearchError
from medledger.research.federation import Federation
from medledger.research.http import HttpSite
from medledger.research.sitelog import read_log
from tests.support.research_vault import (
    LEVELS,
    STUDY_VARS,
    World,
    assert_fit_is_pooled,
    check_against_pooled,
    pooled_crosstab,
    reference,
    vault_world,
)
from tests.support.sites import CLI, MODULE, Started, site_processes

pytestmark = pytest.mark.integration
HOSPITALS = ["hosp-a", "hosp-b", "hosp-c", "hosp-d"]
VARS = [*STUDY_VARS, "days_to_stroke", "stroke"]
ANALYSES = ["crosstab", "glm", "moments", "survival"]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with vault_world(tmp_path_factory.mktemp("rv4"), HOSPITALS, seed=31, persons=200,
                     rows=500) as w:
        yield w


Sites = Started


@pytest.fixture
def sites(world: World, tmp_path: Path) -> Iterator[Sites]:
    """One site process per hospital: its own vault, the workspace's ledger, its own log."""
    with site_processes([(h, [*(MODULE if i % 2 else CLI), "--name", h, "--vault",
                              str(world.root / "vaults" / h), "--ledger", str(world.ws.root),
                              "--audit-log", str(tmp_path / f"{h}.log")])
                         for i, h in enumerate(HOSPITALS)]) as out:
        yield out


def _state(w: World, key: str) -> Any:
    raw = w.node.store.get_state(key)
    return None if raw is None else orjson.loads(raw)


def test_four_vault_site_processes_agree_with_pooled_consenting_rows(
        world: World, sites: Sites) -> None:
    w = world
    sid = w.study(analyses=ANALYSES, variables=VARS)
    clients = [c for _, c in sites]
    fed = Federation(clients, study=sid, secure=True, recorder=w.recorder(sid))
    col = w.pooled(VARS)
    everyone = sum(len(reference(v)) for v in w.vaults.values())

    table = check_against_pooled(fed, col, everyone)

    one = w.seen_at(1)  # a revocation reaches every site process through the ledger
    w.revoke(one)
    after = fed.crosstab(LEVELS)
    assert table.sum() - after.sum() == 1
    assert after.tolist() == pooled_crosstab(w.pooled(VARS)).tolist()

    # every run is on the ledger: the query, each site's response hash, the result hash
    for entry in fed.trail:
        q = _state(w, f"studies/query/{sid}/{entry['query_id']}")
        assert q is not None and q["query_hash"] == entry["query"]
        for h in HOSPITALS:
            r = _state(w, f"studies/response/{sid}/{entry['query_id']}/{h}")
            assert r["response_hash"] == entry["responses"][h]
        assert _state(w, f"studies/result/{sid}/{entry['query_id']}")["result_hash"] == \
            entry["result"]
    for _, client in sites:  # and in each site's own log, served by its process
        entries, problems, _ = read_log(client.audit_log())
        assert problems == []
        assert [e["response"] for e in entries] == [t["responses"][client.name]
                                                    for t in fed.trail]


class KilledMidway:
    """A site client whose process is killed (SIGKILL) just before its ``after``-th answer:
    from then on the coordinator reaches nothing (a real dropout, over a real socket)."""

    def __init__(self, proc: subprocess.Popen[bytes], client: HttpSite, after: int) -> None:
        self.proc, self.client, self.after, self.answers = proc, client, after, 0
        self.name = client.name

    def answer(self, query: Mapping[str, Any]) -> dict[str, Any]:
        self.answers += 1
        if self.answers == self.after:
            self.proc.kill()
            self.proc.wait(timeout=10)
        return self.client.answer(query)

    def public_key(self) -> bytes:
        return self.client.public_key()

    def recover(self, round_id: str, peers: dict[str, str], dropped: list[str],
                length: int) -> list[str]:
        return self.client.recover(round_id, peers, dropped, length)

    def study_spec(self, study: str) -> dict[str, Any]:
        return self.client.study_spec(study)


def test_a_site_process_killed_mid_study_recovers_or_aborts(world: World, sites: Sites
                                                            ) -> None:
    w = world
    sid = w.study(analyses=ANALYSES, variables=VARS)
    clients = [c for _, c in sites]
    abort = Federation(clients, study=sid, secure=True, on_dropout="abort",
                       recorder=w.recorder(sid), run_prefix="a")
    assert abort.crosstab(LEVELS).tolist() == pooled_crosstab(w.pooled(VARS)).tolist()

    proc, client = sites[3]
    killed = KilledMidway(proc, client, after=3)  # hosp-d dies before its third GLM round
    recover = Federation([*clients[:3], killed], study=sid, secure=True, on_dropout="recover",
                         recorder=w.recorder(sid), run_prefix="r")
    fit = recover.glm("binomial", "hypertension", ["age", "female", "visits"])
    assert proc.poll() is not None
    dropped = [e.get("dropped", []) for e in recover.trail]
    assert dropped[:2] == [[], []] and all(d == ["hosp-d"] for d in dropped[2:])
    # IRLS after the dropout converges on the survivors' rows: their pooled fit, exactly
    assert_fit_is_pooled(fit, w.pooled(VARS, HOSPITALS[:3]), "hypertension",
                         ["age", "female", "visits"], sm.families.Binomial())
    last = recover.trail[-1]["query_id"]
    assert _state(w, f"studies/result/{sid}/{last}")["dropped"] == ["hosp-d"]
    assert _state(w, f"studies/response/{sid}/{last}/hosp-d") is None

    # configured to abort, the same dropout releases nothing
    with pytest.raises(ResearchError, match=r"aborted: \['hosp-d'\] dropped out"):
        abort.crosstab(LEVELS)
    qid = abort.trail[-1]["query_id"]
    assert "result" not in abort.trail[-1]
    assert _state(w, f"studies/query/{sid}/{qid}") is not None
    assert _state(w, f"studies/result/{sid}/{qid}") is None
    assert abort.trail[-1]["outcomes"]["hosp-d"] == "dropped"
