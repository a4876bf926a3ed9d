"""A study on a real embedded ledger: register, site approvals co-signed by data stewards,
a federated GLM recorded query by query, and ``medledger research verify`` on the bundle."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from medledger.cli.main import app
from medledger.client.client import Client
from medledger.research import audit
from medledger.research.disclosure import Policy
from medledger.research.federation import Federation
from medledger.research.http import site_app
from medledger.research.recorder import LedgerRecorder
from medledger.research.site import Site
from medledger.research.synth import site_tables
from medledger.workspace import Workspace
from tests.support.research_vault import caller, enroll_study_members

pytestmark = pytest.mark.integration
HOSPITALS = ["hosp-a", "hosp-b", "hosp-c"]


def test_study_on_the_ledger_and_verify_cli(tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "ws", "research-1")
    ring = ws.keyring()
    bundle = tmp_path / "bundle"
    with ws.node(max_wait=0.001) as node:
        def client(member: str) -> Client:
            return Client(node, node.chain_id, member, ring.signing[member])

        enroll_study_members(client, ring, HOSPITALS)
        dr = client("research/dr")
        assert dr.call("studies", "register", {
            "study": "s1", "protocol": "ab" * 32, "ethics_ref": "IRB-1", "sites": HOSPITALS,
            "analyses": ["glm", "crosstab"], "variables": ["age", "smoker", "event", "sex"],
            "dp_budget_milli_eps": 1000,
            "contribution": {"method": "shapley", "utility": "cd" * 32},
            "revenue_pool": 9000}).ok
        for h in HOSPITALS:
            args = {"study": "s1", "site": h, "committee_ref": f"DC-{h}"}
            assert not client(f"{h}/root").call("studies", "approve", args).ok
            assert client(f"{h}/root").call("studies", "approve", args,
                                             cosigners={f"{h}/dsc": ring.signing[f"{h}/dsc"]}).ok
        sites = [Site(h, t, Policy(), audit_path=tmp_path / f"{h}.log") for h, t in
                 zip(HOSPITALS, site_tables([400, 600, 800], seed=5), strict=True)]
        rec = LedgerRecorder("s1", caller(dr), {h: caller(client(f"{h}/gw"))
                                                  for h in HOSPITALS})
        fed = Federation(sites, study="s1", secure=True, recorder=rec)
        fit = fed.glm("binomial", "event", ["age", "smoker"])
        assert fit.converged
        fed.crosstab({"sex": ["F", "M"]}, epsilon=0.6)
        audit.write_bundle(bundle, fed.trail)
    # a restarted peer reads the spent budget back from its store and refuses an overspend
    store = ws.store()
    try:
        assert json.loads(store.get_state("studies/spent/s1") or b"null") == {"milli_eps": 600}
    finally:
        store.close()
    with ws.node(max_wait=0.001) as node:
        again = Client(node, node.chain_id, "research/dr", ring.signing["research/dr"])
        r = again.call("studies", "query", {
            "study": "s1", "query_id": "late", "query_hash": "00" * 32, "analysis": "crosstab",
            "variables": ["sex"], "sites": HOSPITALS, "dp_milli_eps": 500})
        assert not r.ok and "DP budget" in str(r)
    runner = CliRunner()
    ok = runner.invoke(app, ["research", "verify", str(bundle), "--study", "s1",
                             "--dir", str(ws.root)])
    assert ok.exit_code == 0, ok.output
    assert f"{len(fed.trail) * 5} hashes match" in ok.output
    logs = [f"--site-log={h}={tmp_path / f'{h}.log'}" for h in HOSPITALS]
    ok = runner.invoke(app, ["research", "verify", str(bundle), "--study", "s1",
                             "--dir", str(ws.root), *logs])
    assert ok.exit_code == 0, ok.output
    assert "3 site log(s) agree" in ok.output
    log = tmp_path / "hosp-c.log"
    raw = bytearray(log.read_bytes())
    raw[len(raw) // 2] ^= 0x01  # one byte of the site's own log
    log.write_bytes(bytes(raw))
    bad = runner.invoke(app, ["research", "verify", str(bundle), "--study", "s1",
                              "--dir", str(ws.root), *logs])
    assert bad.exit_code == 1 and "hosp-c: log hosp-c.log line" in bad.output, bad.output
    raw[len(raw) // 2] ^= 0x01
    log.write_bytes(bytes(raw))
    # the same log fetched from the site process (GET /audit-log), then one byte changed there
    with TestClient(site_app(sites[2])) as http, _served(http) as url:
        remote = runner.invoke(app, ["research", "verify", str(bundle), "--study", "s1",
                                     "--dir", str(ws.root), f"--site-url=hosp-c={url}"])
        assert remote.exit_code == 0 and "1 site log(s) agree" in remote.output, remote.output
        raw[len(raw) // 3] ^= 0x01
        log.write_bytes(bytes(raw))
        bad = runner.invoke(app, ["research", "verify", str(bundle), "--study", "s1",
                                  "--dir", str(ws.root), f"--site-url=hosp-c={url}"])
        assert bad.exit_code == 1 and "hosp-c: log" in bad.output, bad.output

    path = bundle / "q2" / "response-hosp-b.json"
    raw = bytearray(path.read_bytes())
    raw[10] ^= 0x20
    path.write_bytes(bytes(raw))
    bad = runner.invoke(app, ["research", "verify", str(bundle), "--study", "s1",
                              "--dir", str(ws.root)])
    assert bad.exit_code == 1
    assert "q2/response-hosp-b.json" in bad.output


@contextmanager
def _served(client: TestClient) -> Iterator[str]:
    """A loopback HTTP server that forwards GET requests to an in-process site app."""

    class Forward(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            r = client.get(self.path)
            self.send_response(r.status_code)
            self.send_header("content-type", r.headers["content-type"])
            self.end_headers()
            self.wfile.write(r.content)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Forward)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
