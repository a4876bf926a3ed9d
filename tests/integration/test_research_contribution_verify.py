"""A contribution recorded on a real embedded ledger, and ``medledger research verify``
rechecking its revenue split from the ledger record (ADR 0049)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import orjson
import pytest
from typer.testing import CliRunner

from medledger.cli.main import app
from medledger.client.client import Client
from medledger.research import audit
from medledger.research.contribution import Shapley, contribution_args
from medledger.research.disclosure import Policy
from medledger.research.federation import Federation
from medledger.research.recorder import LedgerRecorder
from medledger.research.site import Site
from medledger.research.synth import site_tables
from medledger.workspace import Workspace
from tests.support.research_vault import caller, enroll_study_members

pytestmark = pytest.mark.integration
HOSPITALS = ["hosp-a", "hosp-b", "hosp-c"]
RULE = {"method": "blend", "utility": "cd" * 32, "shapley_weight_ppm": 500_000}


def _study(ws: Workspace, bundle: Path) -> None:
    ring = ws.keyring()
    with ws.node(max_wait=0.001) as node:
        def client(member: str) -> Client:
            return Client(node, node.chain_id, member, ring.signing[member])

        enroll_study_members(client, ring, HOSPITALS)
        dr = caller(client("research/dr"))
        dr("register", {"study": "s1", "protocol": "ab" * 32, "ethics_ref": "IRB-1",
                        "sites": HOSPITALS, "analyses": ["crosstab"], "variables": ["sex"],
                        "contribution": RULE, "revenue_pool": 9000})
        for h in HOSPITALS:
            assert client(f"{h}/root").call(
                "studies", "approve", {"study": "s1", "site": h, "committee_ref": "DC"},
                cosigners={f"{h}/dsc": ring.signing[f"{h}/dsc"]}).ok
        sites = [Site(h, t, Policy()) for h, t in
                 zip(HOSPITALS, site_tables([400, 600, 800], seed=5), strict=True)]
        rec = LedgerRecorder("s1", dr, {h: caller(client(f"{h}/gw")) for h in HOSPITALS})
        fed = Federation(sites, study="s1", recorder=rec)
        fed.crosstab({"sex": ["F", "M"]})
        audit.write_bundle(bundle, fed.trail)
        sh = Shapley(np.array([0.31, 0.12, -0.01]), np.zeros(3), "exact", 0, 0, 0.42)
        args = contribution_args("s1", RULE, 9000, HOSPITALS, [400, 600, 800], sh,
                                 [0.05, 0.02, -0.003])
        off = dict(args, shares=[{**s, "revenue": 3000, "share_ppm": 333_333 + (i == 0)}
                                 for i, s in enumerate(args["shares"])])
        refused = client("research/dr").call("studies", "contribution", off)
        assert refused.code == "conflict" and "split off the declared blend rule" in \
            refused.message
        dr("contribution", args)


def test_verify_rechecks_the_recorded_split(tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "ws", "research-contribution")
    bundle = tmp_path / "bundle"
    _study(ws, bundle)
    runner = CliRunner()
    cmd = ["research", "verify", str(bundle), "--study", "s1", "--dir", str(ws.root)]
    ok = runner.invoke(app, cmd)
    assert ok.exit_code == 0, ok.output
    assert "the revenue split follows the declared rule" in " ".join(ok.output.split())
    store = ws.store()
    path = store.path
    key = "studies/contribution/s1"
    record = orjson.loads(store.get_state(key) or b"{}")
    store.close()
    assert path is not None
    a, b = record["shares"][0], record["shares"][1]
    a["revenue"], b["revenue"] = b["revenue"], a["revenue"]  # still sums to the pool
    with sqlite3.connect(path) as db:
        db.execute("UPDATE state SET value = ? WHERE key = ?", (orjson.dumps(record), key))
    bad = runner.invoke(app, cmd)
    assert bad.exit_code == 1, bad.output
    assert "contribution: hosp-a revenue" in " ".join(bad.output.split())
