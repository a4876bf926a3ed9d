"""Peers on a private 3-server JetStream cluster with R3 streams."""

from __future__ import annotations

import time

import pytest

from tests.cluster.conftest import WallClock, same_chain, wait_height
from tests.conftest import Ledger

pytestmark = [pytest.mark.integration, pytest.mark.nats]


def anchor(led: Ledger, member: str, i: int) -> bytes:
    return led.build(member, "registry", "anchor_batch", {
        "batch_id": f"b{i}", "root": f"{i:064x}", "count": 1, "record_type": "Filler",
        "source_system": "tests", "schema_version": "1"}, nonce=10_000 + i)


def test_three_peers_on_r3(start_peers) -> None:  # type: ignore[no-untyped-def]
    cons, peers = start_peers()
    leds = [Ledger(p.node, cons.ring, WallClock()) for p in peers]  # type: ignore[arg-type]
    members = ["hosp-a/gw", "hosp-b/gw", "hosp-a/steward"]
    futs = [leds[i % 3].node.submit_many([anchor(leds[i % 3], members[i % 3], i)])[0]
            for i in range(90)]
    receipts = [f.result(20) for f in futs]
    assert all(r.ok for r in receipts), [r.code for r in receipts if not r.ok][:3]
    wait_height(peers, max(r.height for r in receipts))
    same_chain(peers)
    assert {p.node.head.state_root for p in peers} == {peers[0].node.head.state_root}


def test_checkpoints_become_final_with_a_quorum(start_peers) -> None:  # type: ignore[no-untyped-def]
    from medledger.ledger.finality import ConsortiumKeys, FinalCheckpoint

    cons, peers = start_peers(witnesses=["hosp-a", "hosp-b", "cdc"])
    led = Ledger(peers[0].node, cons.ring, WallClock())  # type: ignore[arg-type]
    r = led.filler()
    deadline = time.monotonic() + 15
    while any(p.exchange.state.final_height < r.height for p in peers):
        assert time.monotonic() < deadline, [p.status() for p in peers]
        time.sleep(0.05)
    keys = {o: k for o, k in cons.genesis.org_keys().items() if o in ("hosp-a", "hosp-b", "cdc")}
    for p in peers:
        note = p.exchange.final_note()
        assert note is not None
        fin = FinalCheckpoint.verify(note, ConsortiumKeys(log=keys, witnesses=keys))
        assert fin.checkpoint.size >= r.index + 1
        assert len(fin.cosigners) >= 2  # quorum(3) = 2
        assert not p.exchange.state.alarms
    # the light client of a cluster accepts only final checkpoints
    from medledger.client.light import LightClient, LightClientError
    from medledger.node import views

    lc = LightClient(cons.genesis.chain_id, trusted=keys, witnesses=keys)
    p = peers[0]
    note = p.exchange.final_note()
    assert note is not None
    cp = lc.checkpoint(note)
    bare = p.node.store.checkpoint(cp.size)
    assert bare is not None
    with pytest.raises(LightClientError, match="not_final"):
        lc.checkpoint(bare[2])  # signed by the peer alone
    bundle = views.tx_proof(p.node.store, p.node.store.tx(r.tx_id), cp.size)  # type: ignore[arg-type]
    assert lc.verify_bundle(bundle).size == cp.size


def test_the_cli_proves_a_transaction_final_through_a_peer(start_peers, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """`medledger proof inclusion TX --url PEER` accepts the proof only against a checkpoint
    that a quorum of the witnesses cosigned."""
    import json

    from typer.testing import CliRunner

    from medledger.api.app import create_app
    from medledger.cli.main import app
    from tests.support.serve import served_app

    cons, peers = start_peers(witnesses=["hosp-a", "hosp-b", "cdc"])
    led = Ledger(peers[0].node, cons.ring, WallClock())  # type: ignore[arg-type]
    r = led.filler()
    client_dir = tmp_path / "client"
    client_dir.mkdir()
    (client_dir / "genesis.json").write_bytes(cons.genesis.encoded)
    cons.ring.save(client_dir / "keyring.json")
    runner = CliRunner()

    def prove(*extra: str) -> tuple[int, str]:
        out = runner.invoke(app, ["proof", "inclusion", r.tx_id.hex(), "--url", url,
                                  "--as", "hosp-b/root", "--dir", str(client_dir), *extra])
        return out.exit_code, out.output

    with served_app(create_app(peers[0].node)) as url, \
            served_app(create_app(peers[1].node)) as url_b:
        # the operators' view of peers on other machines: their health endpoints
        out_ = runner.invoke(app, ["peer", "status", url, url_b, "--json"])
        assert out_.exit_code == 0, out_.output
        seen = json.loads(out_.output)
        assert seen["chains"] == [cons.genesis.chain_id]
        assert set(seen["peers"]) == {"hosp-a", "hosp-b"}
        assert all(p["running"] and p["height"] >= r.height for p in seen["peers"].values())
        out_ = runner.invoke(app, ["peer", "status", url, "http://127.0.0.1:9/v1"])
        assert out_.exit_code == 1 and "hosp-a" in out_.output, out_.output
        assert "127.0.0.1:9" in out_.output  # the one that does not answer, named
        code, out = prove("--witnesses", "hosp-a,hosp-b,cdc")
        assert code == 0, out
        doc = json.loads(out)
        assert doc["index"] == r.index and doc["final"]["size"] > r.index
        assert doc["final"]["witnesses"] == ["cdc", "hosp-a", "hosp-b"]
        assert doc["final"]["needed"] == 2
        # every organisation of the genesis as witness: the peer's final checkpoint carries the
        # 3 running peers' cosignatures, not a quorum of them, so this client refuses it
        orgs = sorted(cons.genesis.org_keys())
        assert len(orgs) > 3
        code, out = prove("--timeout", "1")
        assert code == 1 and "verify_failed" in out and "not_final" in out, out
        code, out = prove("--witnesses", "hosp-a,nobody")
        assert code == 2 and "bad_args" in out and "nobody" in out, out

        def prove_state(key: str, *extra: str) -> tuple[int, str]:
            out = runner.invoke(app, ["proof", "state", key, "--url", url, "--as", "hosp-b/root",
                                      "--dir", str(client_dir), "--witnesses",
                                      "hosp-a,hosp-b,cdc", *extra])
            return out.exit_code, out.output

        # a value and an absence, each proven against a final checkpoint
        code, out = prove_state("consortium/config")
        assert code == 0, out
        doc = json.loads(out)
        assert doc["verified"]["present"] and doc["value"] is not None
        assert doc["final"]["size"] >= r.index + 1 and doc["height"] >= r.height
        code, out = prove_state("registry/no-such-key")
        assert code == 0, out
        doc = json.loads(out)
        assert not doc["verified"]["present"] and doc["value"] is None
        # a height no final checkpoint covers yet: refused once the wait runs out
        code, out = prove_state("consortium/config", "--height", "100000", "--timeout", "0.3")
        assert code == 1 and "timeout" in out, out
