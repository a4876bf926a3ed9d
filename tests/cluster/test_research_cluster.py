"""A study on the cluster (issue 6, "Real parts": sites on the cluster when it exists).

One peer process per organisation — four hospitals and the research centre — each on its own
PostgreSQL schema, ordering through a 3-server NATS JetStream cluster (``LocalCluster``). Each
hospital's gateway ingests its synthetic exports (``synth.generate(hospitals=4)``) into its own
vault and anchors the batch roots through *its own* peer's HTTP API with the keys in its peer
directory (``gateway.service.ledger(DIR/peers/<org>)``), and grants its patients' consents
there. The researcher registers a study through the research peer; each hospital approves
through its own peer. Each research site runs as its own process (``medledger research site
--ledger postgresql://…``) and reads its hospital peer's PostgreSQL store: the recorded query,
the study terms and the consents at the query's height. A secure federated count, binomial GLM
and Kaplan–Meier are compared with statsmodels on exactly the consenting patients' rows
(``tests.support.research_vault``), and every peer holds the same study records — query,
response and result hashes, written at the same heights — as the coordinator's trail.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from medledger.client.client import Client
from medledger.client.http import HttpTransport, is_problem
from medledger.cluster.local import LocalCluster, PeerConfig
from medledger.consortium.bootstrap import Keyring
from medledger.gateway import service
from medledger.gateway.synth import generate, site_names
from medledger.gateway.vault import Vault
from medledger.gateway.verify import verify
from medledger.ledger.store.postgres import PostgresStore
from medledger.research.federation import Federation
from medledger.research.http import HttpSite
from medledger.research.recorder import LedgerRecorder
from tests.support.research_vault import (
    ADMITTING,
    PSEUDONYM_KEY,
    STUDY_VARS,
    caller,
    check_against_pooled,
    consent_mix,
    members,
    pooled_rows,
    reference,
    register_args,
)
from tests.support.services import PG_DSN, require_binary, require_port
from tests.support.sites import CLI, site_processes

pytestmark = [pytest.mark.integration, pytest.mark.nats, pytest.mark.postgres]
HOSPITALS = site_names(4)
ORGS = [*((h, f"Hospital {h}", "hospital") for h in HOSPITALS),
        ("research", "National Clinical Research Centre", "research")]
VARS = [*STUDY_VARS, "days_to_stroke", "stroke"]


def _pg_uri() -> str:
    d = conninfo_to_dict(PG_DSN)
    user = f"{d['user']}@" if d.get("user") else ""
    return f"postgresql://{user}{d.get('host', '127.0.0.1')}:{d.get('port', 5432)}/{d['dbname']}"


@dataclass
class ClusterWorld:
    root: Path
    cluster: LocalCluster
    ring: Keyring
    http: dict[str, HttpTransport]  # one per organisation: its own peer
    stores: dict[str, str]  # org → its peer's postgresql:// store location
    vaults: dict[str, Vault]
    consenting: set[str]

    def client(self, member: str) -> Client:
        org = member.split("/")[0]
        return Client(self.http[org], self.cluster.chain, member, self.ring.signing[member])

    def heights(self) -> dict[str, int]:
        return {o: int((self.cluster.health(o) or {}).get("height", -1)) for o in self.http}

    def settle(self, height: int, timeout: float = 60) -> None:
        """Until every peer has executed block ``height``."""
        deadline = time.monotonic() + timeout
        while min(self.heights().values()) < height:
            assert time.monotonic() < deadline, self.heights()
            time.sleep(0.1)


def _grant(w: ClusterWorld, refs: dict[str, dict[str, Any]]) -> int:
    """Each patient's consent granted by the first hospital that sees them, through that
    hospital's own peer (one NDJSON batch per hospital); returns the highest block."""
    batches: dict[str, list[bytes]] = {h: [] for h in HOSPITALS}
    patients = sorted(set().union(*refs.values()))
    for p, args, kind in consent_mix(patients):
        if args is None:
            continue
        h = next(h for h in HOSPITALS if p in refs[h])
        batches[h].append(w.client(f"{h}/root").build("consent", "grant", args))
        if kind in ADMITTING:
            w.consenting.add(p)
    top = 0
    for h, raws in batches.items():
        for doc in w.http[h].submit_batch(raws, timeout=60):
            assert not is_problem(doc) and doc["code"] == "ok", doc
            top = max(top, int(doc["height"]))
    return top


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterWorld]:
    require_port("127.0.0.1", 5432, "PostgreSQL")
    require_binary("nats-server")
    root = tmp_path_factory.mktemp("rc")
    tag = uuid.uuid4().hex[:10]
    base = _pg_uri()
    # a fresh schema per peer (rc_<tag>_<org>, from the prefix in the URI), dropped afterwards
    c = LocalCluster.create(root / "cluster", ORGS, chain=f"research-{tag}",
                            postgres=f"{base}?schema=rc_{tag}", members=members(HOSPITALS))
    schemas = {org: f"rc_{tag}_{org.replace('-', '_')}" for org in c.peers}
    for org, schema in schemas.items():
        cfg = PeerConfig.load(root / "cluster" / "peers" / org / "peer.json")
        assert cfg.store == f"{base}?schema={schema}"
    http: dict[str, HttpTransport] = {}
    vaults: dict[str, Vault] = {}
    try:
        c.start(timeout=90)
        http = {org: HttpTransport(c.url(org), wait_timeout=60) for org in c.peers}
        w = ClusterWorld(root, c, c.keyring(), http,
                         {o: f"{base}?schema={s}" for o, s in schemas.items()},
                         {h: Vault(root / "vaults" / h) for h in HOSPITALS}, set())
        vaults = w.vaults
        names = generate(root / "syn", seed=31, persons=200, rows=500, hospitals=4)
        for h in HOSPITALS:  # each gateway anchors through its own peer, with its own keys
            files = [root / "syn" / n for n in names if n.startswith(h + "/")]
            with service.ledger(root / "cluster" / "peers" / h, h) as anchorer:
                assert anchorer.client.member_id == f"{h}/gateway"
                service.ingest_export_dir(w.vaults[h], PSEUDONYM_KEY, files, h, anchorer)
                report = verify(w.vaults[h], anchorer)  # roots read back from that peer
                assert report.ok and report.anchored >= 1, report.to_doc()
                assert anchorer.anchored_root("no-such-batch") is None  # 404 → absent
        w.settle(_grant(w, {h: reference(v) for h, v in w.vaults.items()}))
        yield w
    finally:
        for t in http.values():
            t.close()
        for v in vaults.values():
            v.close()
        c.stop()
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            for schema in schemas.values():
                conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                    sql.Identifier(schema)))


@pytest.fixture
def sites(world: ClusterWorld, tmp_path: Path) -> Iterator[list[HttpSite]]:
    """One research site process per hospital, reading its hospital peer's PostgreSQL store."""
    with site_processes([(h, [*CLI, "--name", h, "--vault", str(world.root / "vaults" / h),
                              "--ledger", world.stores[h], "--audit-log",
                              str(tmp_path / f"{h}.log")])
                         for h in HOSPITALS]) as started:
        yield [client for _, client in started]


def _study(w: ClusterWorld) -> tuple[str, int]:
    """Registered through the research peer, approved by each hospital through its own."""
    sid = "cluster-1"
    caller(w.client("research/dr"))("register", register_args(
        sid, HOSPITALS, analyses=["crosstab", "glm", "moments", "survival"], variables=VARS))
    top = 0
    for h in HOSPITALS:
        r = w.client(f"{h}/root").call(
            "studies", "approve", {"study": sid, "site": h, "committee_ref": f"DC-{h}"},
            cosigners={f"{h}/steward": w.ring.signing[f"{h}/steward"]})
        assert r.ok, r
        top = max(top, r.height)
    return sid, top


def test_a_study_on_the_cluster(world: ClusterWorld, sites: list[HttpSite]) -> None:
    w = world
    sid, height = _study(w)
    w.settle(height)  # every site's peer sees the study active before it is asked
    rec = LedgerRecorder(sid, caller(w.client("research/dr")),
                         {h: caller(w.client(f"{h}/gateway")) for h in HOSPITALS})
    fed = Federation(sites, study=sid, secure=True, recorder=rec)
    col = pooled_rows(w.vaults, w.consenting, VARS)
    everyone = sum(len(reference(v)) for v in w.vaults.values())

    check_against_pooled(fed, col, everyone)

    # every peer holds the same study records, written at the same heights
    top = max(w.heights().values())
    w.settle(top)
    keys = []
    for e in fed.trail:
        q = e["query_id"]
        keys += [(f"studies/query/{sid}/{q}", "query_hash", e["query"]),
                 (f"studies/result/{sid}/{q}", "result_hash", e["result"])]
        keys += [(f"studies/response/{sid}/{q}/{h}", "response_hash", e["responses"][h])
                 for h in HOSPITALS]
    seen: dict[str, Any] = {}
    for org, location in w.stores.items():
        schema = location.partition("?schema=")[2]
        store = PostgresStore(PG_DSN, schema)
        try:
            block = store.block(top)
            assert block is not None
            got: dict[str, Any] = {"block": block.hash.hex()}
            for key, field, want_hash in keys:
                found = store.state_at(key, top)
                assert found is not None and found[1] is not None, (org, key)
                assert orjson.loads(found[1])[field] == want_hash, (org, key)
                got[key] = (found[0], bytes(found[1]).hex())
        finally:
            store.close()
        seen[org] = got
    first = seen.pop("research")
    assert all(v == first for v in seen.values())
    assert len(keys) == len(fed.trail) * (2 + len(HOSPITALS)) > 30
