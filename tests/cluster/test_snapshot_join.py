"""A new peer joins from a cosigned snapshot, and a tampered snapshot is refused."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from medledger.cluster.natsd import NatsCluster
from medledger.cluster.peer import Peer, PeerOptions
from medledger.cluster.snapshot import SnapshotError, export_snapshot, join_from_snapshot
from medledger.errors import Code
from medledger.installed import default_registry
from medledger.ledger.store.sqlite import SQLiteStore
from tests.cluster.conftest import WallClock, same_chain, wait_height
from tests.conftest import Ledger

pytestmark = [pytest.mark.integration, pytest.mark.nats]
WITNESSES = ["hosp-a", "hosp-b", "cdc"]


def _fill(led: Ledger, n: int, tag: str) -> int:
    top = 0
    for i in range(n):
        top = led.ok("hosp-a/gw", "registry", "register", {
            "record_id": f"{tag}{i}", "record_type": "Observation", "source_system": "his",
            "content_hash": f"{i:064x}", "schema_version": "1"}).height
    return top


def test_join_from_snapshot_then_follow_the_stream(
        nats3: NatsCluster, start_peers, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cons, peers = start_peers(tuple(WITNESSES), witnesses=WITNESSES)
    led = Ledger(peers[0].node, cons.ring, WallClock())  # type: ignore[arg-type]
    top = _fill(led, 30, "a")
    deadline = time.monotonic() + 20
    while peers[0].exchange.state.final_height < top:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    snap = tmp_path / "snap.db"
    exported = export_snapshot(peers[0].node.store, snap)
    assert exported >= top
    keys = {o: k for o, k in cons.genesis.org_keys().items() if o in WITNESSES}

    # a tampered copy is refused and the joining store stays empty
    bad = tmp_path / "bad.db"
    bad.write_bytes(snap.read_bytes())
    db = sqlite3.connect(bad)
    db.execute("UPDATE txs SET result = replace(result, 'ok', 'no') WHERE idx = 3")
    db.commit()
    db.close()
    fresh = SQLiteStore(tmp_path / "refused.db")
    with pytest.raises(SnapshotError) as err:
        join_from_snapshot(bad, fresh, cons.genesis, default_registry(), witnesses=keys)
    assert err.value.code == Code.VERIFY_FAILED and "does not verify" in err.value.message
    assert fresh.genesis() is None
    fresh.close()

    # a good one: the new peer starts at the final height and follows the stream from there
    store = SQLiteStore(tmp_path / "insurer.db")
    start = join_from_snapshot(snap, store, cons.genesis, default_registry(), witnesses=keys)
    assert top <= start <= exported
    late = Peer(store, cons.genesis, default_registry(), org="insurer",
                key=cons.ring.signing["insurer/root"],
                options=PeerOptions(nats3.urls, replicas=3, sequencer=False,
                                    witnesses=WITNESSES)).start()
    try:
        assert late.node.height >= start
        more = _fill(led, 10, "b")
        wait_height([*peers, late], more)
        same_chain([*peers, late])
        assert late.node.head.state_root == peers[0].node.head.state_root
    finally:
        late.stop()
        store.close()


def test_cli_snapshot_and_join(tmp_path: Path) -> None:
    """`peer snapshot` exports a peer directory's store; `peer join` refuses a snapshot that
    holds no final checkpoint and leaves the store empty."""
    from typer.testing import CliRunner

    from medledger.cli.main import app
    from medledger.cluster.local import LocalCluster
    from medledger.node.node import Node
    from medledger.workspace import DEFAULT_ORGS

    c = LocalCluster.create(tmp_path / "c", DEFAULT_ORGS[:3])  # laid out, not started
    genesis = (tmp_path / "c" / "genesis.json").read_bytes()
    from medledger.consortium.genesis import Genesis

    store = SQLiteStore(tmp_path / "c" / "peers" / "hosp-a" / "ledger.db")
    Node.create(store, Genesis.load(genesis), default_registry(),
                signer=("hosp-a", c.keyring().signing["hosp-a/root"])).start().stop()
    store.close()
    runner = CliRunner()
    snap = tmp_path / "s.db"
    # the operator verifies a peer's store from its directory
    out = runner.invoke(app, ["verify", "--dir", str(tmp_path / "c" / "peers" / "hosp-a")])
    assert out.exit_code == 0 and "OK" in out.output, out.output
    out = runner.invoke(app, ["verify", "--dir", str(tmp_path / "c" / "peers" / "hosp-c")])
    assert out.exit_code == 2 and "not_found" in out.output, out.output
    # a peer that never ran has no store to export: refused, and none is created
    out = runner.invoke(app, ["peer", "snapshot", str(tmp_path / "c" / "peers" / "hosp-c"),
                              str(snap)])
    assert out.exit_code == 2 and "not_found" in out.output, out.output
    assert not (tmp_path / "c" / "peers" / "hosp-c" / "ledger.db").exists() and not snap.exists()
    out = runner.invoke(app, ["peer", "snapshot", str(tmp_path / "c" / "peers" / "hosp-a"),
                              str(snap)])
    assert out.exit_code == 0 and "height 0" in out.output, out.output
    out = runner.invoke(app, ["peer", "join", str(tmp_path / "c" / "peers" / "hosp-b"),
                              "--snapshot", str(snap)])
    assert out.exit_code == 2 and "no final" in out.output, out.output
    b = SQLiteStore(tmp_path / "c" / "peers" / "hosp-b" / "ledger.db")
    assert b.genesis() is None
    b.close()
