"""A gateway anchoring through a node's HTTP API (``gateway.service.peer_ledger``), as a
hospital's gateway does through its own cluster peer: batch roots are posted over a real
loopback port and read back from the node's state (``anchor.PeerState``); ``verify`` checks
the vault against them; the CLI does the same with ``--ledger PEER_DIR``. The cluster itself:
``tests/cluster/test_research_cluster.py``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from medledger.api.app import create_app
from medledger.cli.main import app
from medledger.cluster.local import PeerConfig
from medledger.consortium.bootstrap import Keyring
from medledger.gateway import service
from medledger.gateway.deid import PseudonymKey
from medledger.gateway.errors import GatewayError
from medledger.gateway.synth import generate
from medledger.gateway.vault import Vault
from medledger.gateway.verify import verify
from medledger.node.node import Node
from medledger.workspace import Workspace
from tests.support.serve import served_app

pytestmark = pytest.mark.integration


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Workspace, Node, str]]:
    ws = Workspace.init(tmp_path / "ws", "gw-peer", members=[("hosp-a/gateway", "gateway")])
    with ws.node(max_wait=0.005) as node, served_app(create_app(node)) as url:
        yield ws, node, url


def test_a_gateway_anchors_through_a_node_over_http(served: tuple[Workspace, Node, str],
                                                     tmp_path: Path) -> None:
    ws, node, url = served
    names = generate(tmp_path / "syn", seed=4, persons=40, rows=60)
    files = [tmp_path / "syn" / n for n in names if n.startswith("hosp-a/")]
    vault = Vault(tmp_path / "vault")
    try:
        with service.peer_ledger(url, "hosp-a", ws.keyring()) as anchorer:
            assert anchorer.client.member_id == "hosp-a/gateway"
            service.ingest_export_dir(vault, PseudonymKey("k1", b"\x01" * 32), files, "hosp-a",
                                      anchorer)
            batches = vault.rows("SELECT batch_id, root, status FROM batches")
            assert batches and {b[2] for b in batches} == {"anchored"}
            for bid, root, _ in batches:  # read over HTTP = the node's own state
                assert anchorer.anchored_root(bid) == root
                raw = node.store.get_state(f"registry/batch/hosp-a/{bid}")
                assert raw is not None and orjson.loads(raw)["root"] == root
            assert anchorer.anchored_root("no-such-batch") is None
            report = verify(vault, anchorer)
            assert report.ok and report.anchored == len(batches), report.to_doc()
            # a batch the ledger does not hold (renamed in the vault) is reported: the root
            # read back from the node is absent
            for table in ("batches", "records"):
                vault.db.execute(f"UPDATE {table} SET batch_id = 'renamed' WHERE batch_id = ?",
                                 (batches[0][0],))
            vault.db.commit()
            assert [f for f in verify(vault, anchorer).findings if "ledger root" in f] == [
                f"batch renamed: ledger root absent; rebuilt {batches[0][1][:16]}"]
        own = Keyring({k: v for k, v in ws.keyring().signing.items() if k.startswith("hosp-a/")})
        with pytest.raises(GatewayError, match="no hosp-b/gateway or hosp-b/root key"), \
                service.peer_ledger(url, "hosp-b", own):
            pass
    finally:
        vault.close()


def test_the_gateway_cli_anchors_through_a_peer_directory(
        served: tuple[Workspace, Node, str], tmp_path: Path) -> None:
    """``--ledger DIR`` where DIR is a cluster peer's directory (``peer.json``, its own
    organisation's keyring): ``gateway ingest`` anchors and ``gateway verify`` reads the roots
    back through that peer's HTTP API."""
    ws, node, url = served
    peer = tmp_path / "peers" / "hosp-a"
    peer.mkdir(parents=True)
    PeerConfig("hosp-a", "ledger.db", [], int(url.rsplit(":", 1)[1])).save(peer / "peer.json")
    Keyring({k: v for k, v in ws.keyring().signing.items()
             if k.startswith("hosp-a/")}).save(peer / "keyring.json")
    names = generate(tmp_path / "syn", seed=4, persons=40, rows=60)
    files = [str(tmp_path / "syn" / n) for n in names if n.startswith("hosp-a/")]
    PseudonymKey.generate(tmp_path / "pseudonym.json")
    common = ["--vault", str(tmp_path / "vault"), "--ledger", str(peer), "--json"]
    runner = CliRunner()
    done = runner.invoke(app, ["gateway", "ingest", *files, *common,
                               "--pseudonym-key", str(tmp_path / "pseudonym.json")])
    assert done.exit_code == 0, done.output
    height = node.height
    assert node.store.scan_state("registry/batch/hosp-a/")  # anchored on the node behind
    checked = runner.invoke(app, ["gateway", "verify", *common])
    assert checked.exit_code == 0, checked.output
    doc = json.loads(checked.output)
    assert doc["ok"] and doc["anchored"] >= 1 and node.height == height
